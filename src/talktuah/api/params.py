"""Query parameters checked at the API boundary, before any service sees them.

Control characters (NUL above all) and kilobytes of text are never a revision or a glob a
person meant: passed on, they reach huggingface_hub, SQLite and the logs, and used to come
back as a 500 or a 502. Only that much is checked here; the grammar of a revision (git's
ref-name rules) is the download planner's (downloads/hub_data.py), so the two coexist.
"""

from __future__ import annotations

import re

from ..errors import InvalidParameterError

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

MAX_REVISION_LENGTH = 255
MAX_PATTERN_LENGTH = 1024
MAX_PATTERNS = 1000


def plain_text(name: str, value: str, max_length: int) -> str:
    """`value` unchanged, or an InvalidParameterError (422) naming `name` and the fix."""
    if _CONTROL.search(value):
        raise InvalidParameterError(
            f"{name} {_show(value)} contains a control character; send it without one."
        )
    if len(value) > max_length:
        raise InvalidParameterError(
            f"{name} is {len(value)} characters long; send at most {max_length}."
        )
    return value


def patterns(name: str, values: list[str] | None) -> list[str] | None:
    """A list of globs (`allow_patterns`, `ignore_patterns`), each checked by plain_text."""
    if values is None:
        return None
    if len(values) > MAX_PATTERNS:
        raise InvalidParameterError(
            f"{name} has {len(values)} patterns; send at most {MAX_PATTERNS}."
        )
    return [plain_text(name, value, MAX_PATTERN_LENGTH) for value in values]


def _show(value: str) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
