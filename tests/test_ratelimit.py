"""RateLimits without the web layer: the stream cap's slots and the windowed limits."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from talktuah.config import Settings
from talktuah.errors import RateLimitedError
from talktuah.keys import Principal
from talktuah.ratelimit import PROXY, RateLimits


def principal(**limits: object) -> Principal:
    return Principal("k1", "chatty", frozenset(), **limits)  # type: ignore[arg-type]


def test_a_stream_slot_comes_back_once_however_often_it_is_released(tmp_path: Path) -> None:
    limits = RateLimits(Settings(home=tmp_path))
    caller = principal(max_streams=2)
    first = limits.open_stream(caller)
    limits.open_stream(caller)
    with pytest.raises(RateLimitedError, match="already has 2 streams open"):
        limits.open_stream(caller)
    first()
    first()  # the stream's end and an error path may both release it
    assert limits.streams_open(caller) == 1
    limits.open_stream(caller)
    with pytest.raises(RateLimitedError):
        limits.open_stream(caller)


def test_the_proxy_limit_counts_per_key_and_says_when_to_retry(tmp_path: Path) -> None:
    limits = RateLimits(Settings(home=tmp_path))
    caller = principal(proxy_rate_limit="2/minute")
    limits.hit(caller, PROXY)
    limits.hit(caller, PROXY)
    with pytest.raises(RateLimitedError, match="over its proxy limit of 2/minute") as over:
        limits.hit(caller, PROXY)
    assert 1 <= over.value.retry_after <= 60
    limits.hit(Principal("k2", "other", frozenset(), proxy_rate_limit="2/minute"), PROXY)


def test_counting_starts_no_threads_and_a_window_that_ends_starts_afresh(tmp_path: Path) -> None:
    """limits' own memory storage started a sweeping thread after nearly every hit."""
    limits = RateLimits(Settings(home=tmp_path))
    caller = principal(proxy_rate_limit="3/second")
    time.sleep(0.05)  # past limits' own 10 ms sweep timer, started when the storage was made
    before = {thread.ident for thread in threading.enumerate()}
    for _ in range(3):
        limits.hit(caller, PROXY)
    with pytest.raises(RateLimitedError):
        limits.hit(caller, PROXY)
    assert {thread.ident for thread in threading.enumerate()} <= before
    time.sleep(1.05)  # the one-second window is over: its counter is dropped when next read
    limits.hit(caller, PROXY)
