"""A clock the tests move by hand, for code that takes one (`clock=` on the class or
function), instead of sleeping to prove that time passed (issue 20)."""

from __future__ import annotations

import time
from datetime import UTC, datetime


class FakeClock:
    """`clock()` is the time in seconds, as `time.monotonic` or `time.time` would be;
    `clock.utc()` is the same moment as an aware datetime, as `datetime.now(UTC)` would be.
    It starts at the real time and moves only by `advance`."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        return self.now

    def utc(self) -> datetime:
        return datetime.fromtimestamp(self.now, UTC)

    def advance(self, seconds: float) -> None:
        assert seconds >= 0, "a clock does not go back"
        self.now += seconds
