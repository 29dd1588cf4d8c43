"""Read the runnable examples out of the documentation.

A documented command is a line that starts with `curl` inside a ```bash, ```sh, ```shell
or plain ``` fence (```text, ```json, ```python blocks are never run). In
docs/api/model-management.md each one ends with `# -> NNN`, the HTTP status it answers
with when the page's commands run in order against a fresh server.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
MODEL_MANAGEMENT = DOCS / "api" / "model-management.md"
README = ROOT / "README.md"

RUNNABLE_FENCES = frozenset({"", "bash", "sh", "shell", "console"})
_FENCE = re.compile(r"^\s*```+\s*([\w+-]*)")
_EXPECT = re.compile(r"\s+#\s*->\s*(\d{3})\s*$")
_COMMENT = re.compile(r"\s+#(?:\s.*)?$")


@dataclass(frozen=True)
class Example:
    source: str  # file:line, for failure messages
    command: str  # the command as written, without its trailing comment
    expected: int | None  # the status from `# -> NNN`, if any


def curl_examples(path: Path) -> list[Example]:
    """Every curl line in runnable fences, in document order."""
    examples = []
    fence: str | None = None
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        match = _FENCE.match(line)
        if match:
            fence = None if fence is not None else match.group(1).lower()
            continue
        if fence is None or fence not in RUNNABLE_FENCES:
            continue
        stripped = line.strip()
        if not stripped.startswith("curl "):
            continue
        expect = _EXPECT.search(stripped)
        expected = int(expect.group(1)) if expect else None
        command = _EXPECT.sub("", stripped) if expect else _COMMENT.sub("", stripped)
        examples.append(Example(f"{path.name}:{number}", command.rstrip(), expected))
    return examples
