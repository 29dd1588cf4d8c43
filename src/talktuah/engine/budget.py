"""What fits: parsing the limits a user sets, and choosing what to evict to make room.

Pure functions, so the rules are unit-tested without a process (tests/engine/test_budget.py):
a load that would pass `TALKTUAH_MAX_LOADED_MODELS` or `TALKTUAH_MEMORY_BUDGET` evicts the
least recently used idle models — never one with requests in flight, never a pinned one —
and when that is not enough, nothing is evicted and the caller learns what is in the way.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

_DURATION = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT_SECONDS = {None: 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(b|kb|kib|mb|mib|gb|gib|tb|tib)?\s*$", re.I)
_SIZE_UNITS = {
    None: 1, "b": 1, "kb": 10**3, "kib": 2**10, "mb": 10**6, "mib": 2**20,
    "gb": 10**9, "gib": 2**30, "tb": 10**12, "tib": 2**40,
}  # fmt: skip


def parse_keep_alive(value: object) -> float | None:
    """Ollama's `keep_alive`: a duration ("5m", "30s", "1h", "500ms"), a number of seconds,
    a negative value for forever (None), 0 for "unload after the request".

    Raises ValueError with the accepted forms, for a 4xx that says how to fix it.
    """
    if isinstance(value, bool):
        raise ValueError('keep_alive must be a duration such as "5m", seconds, or -1')
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value.lower())):
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    else:
        raise ValueError(
            f'keep_alive {value!r} is not a duration: use "5m", "30s", "1h", a number '
            "of seconds, -1 (keep loaded) or 0 (unload after the request)"
        )
    return None if seconds < 0 else seconds


def parse_memory_budget(value: str, total_bytes: int | None) -> int | None:
    """`TALKTUAH_MEMORY_BUDGET`: bytes ("8000000000", "8GiB") or a percentage ("75%") of
    `total_bytes`; "" or "none" means no budget. None when there is none to apply."""
    text = value.strip().lower()
    if text in ("", "none", "off"):
        return None
    if text.endswith("%"):
        percent = float(text[:-1])
        if not 0 < percent <= 100:
            raise ValueError(f"a memory budget of {value} is not a percentage in (0, 100]")
        return None if total_bytes is None else int(total_bytes * percent / 100)
    match = _SIZE.match(text)
    if match is None:
        raise ValueError(
            f"TALKTUAH_MEMORY_BUDGET={value!r}: use bytes (8000000000, 8GiB) or a "
            "percentage of memory (75%)"
        )
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2)])


@dataclass(frozen=True)
class Resident:
    """A loaded model as the planner sees it."""

    model_id: str
    bytes: int
    last_used: float  # time.monotonic()
    pinned: bool
    busy: bool  # requests in flight, or loading (someone waits for it)


class NoRoom(Exception):
    """Nothing can be evicted to make room; the message names what is pinned or busy."""

    def __init__(self, message: str, *, pinned: Sequence[str], busy: Sequence[str]) -> None:
        super().__init__(message)
        self.pinned = tuple(pinned)
        self.busy = tuple(busy)


def plan_room(
    residents: Sequence[Resident],
    incoming_bytes: int,
    *,
    max_loaded: int,
    budget: int | None,
) -> list[Resident]:
    """The models to evict (least recently used first) so that one more fits.

    A model larger than the whole budget still loads when nothing else is loaded (the
    user asked for it; the budget only decides what shares memory). Raises NoRoom when
    every model that would have to go is pinned or busy.
    """
    count = len(residents) + 1
    total = sum(r.bytes for r in residents) + incoming_bytes

    def fits() -> bool:
        over_budget = budget is not None and total > budget and count > 1
        return count <= max_loaded and not over_budget

    victims: list[Resident] = []
    for resident in sorted(residents, key=lambda r: r.last_used):
        if fits():
            break
        if resident.pinned or resident.busy:
            continue
        victims.append(resident)
        count -= 1
        total -= resident.bytes
    if fits():
        return victims
    pinned = [r.model_id for r in residents if r.pinned]
    busy = [r.model_id for r in residents if r.busy and not r.pinned]
    held = "; ".join(
        part
        for part in (
            f"pinned: {', '.join(pinned)}" if pinned else "",
            f"busy: {', '.join(busy)}" if busy else "",
        )
        if part
    )
    raise NoRoom(
        f"No room for another model ({held or 'nothing to evict'}; "
        f"TALKTUAH_MAX_LOADED_MODELS={max_loaded}"
        + (f", TALKTUAH_MEMORY_BUDGET={budget} bytes" if budget is not None else "")
        + "). Retry when a request finishes, unload one (POST /api/unload-model?model_id=...) "
        "or raise the limits.",
        pinned=pinned,
        busy=busy,
    )
