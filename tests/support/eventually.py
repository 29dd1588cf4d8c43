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
    what: str | Callable[[], str] = "the condition",
    ignoring: tuple[type[BaseException], ...] = (),
) -> T:
    """Call `probe` until `until(value)` holds and return that value; after `timeout` seconds
    fail with the last value seen, so the assertion says where it got stuck.

    An exception of a type in `ignoring` (a server not listening yet) counts as "not yet";
    any other exception from `probe` or `until` ends the wait at once (an `assert` in the
    probe that the process still runs fails fast). `what` names the condition in the
    failure, or is called then to say more (a log's tail)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = probe()
        except ignoring as exc:
            last: object = exc
        else:
            if until(value):
                return value
            last = value
        if time.monotonic() >= deadline:
            said = what() if callable(what) else what
            raise AssertionError(f"{said} did not hold within {timeout} s; last: {last!r}")
        time.sleep(interval)
