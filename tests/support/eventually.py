"""One poll-until for the tests: `eventually(probe, until)` instead of a hand-written
`deadline = time.monotonic() + ...` loop in each test (issue 20)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def eventually(
    probe: Callable[[], T],
    until: Callable[[T], object] = bool,
    *,
    timeout: float = 20,
    interval: float = 0.05,
    what: str = "the condition",
) -> T:
    """Call `probe` until `until(value)` holds and return that value; after `timeout` seconds
    fail with the last value seen, so the assertion says where it got stuck."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if until(value):
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} did not hold within {timeout} s; last: {value!r}")
        time.sleep(interval)
