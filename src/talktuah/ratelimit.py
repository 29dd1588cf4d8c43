"""Per-key rate limits and a cap on concurrent proxy streams.

slowapi's decorators count per endpoint with a limit fixed at import time; ours depend on the
key (read from SQLite) and cover groups of routes (the whole management API, the whole
proxy). So the auth dependency calls slowapi's limiter (slowapi's default, a `limits`
fixed window in memory: a counter per key and window) directly, with the key id as the
identity and the group as the scope.
"""

from __future__ import annotations

import functools
import math
import threading
import time
from collections.abc import Callable

from limits import parse
from limits.storage import MemoryStorage
from slowapi import Limiter

from .config import Settings
from .errors import RateLimitedError
from .keys import Principal

#: A limit string is parsed once, not on every request (the proxy's hot path).
_parse = functools.lru_cache(maxsize=256)(parse)

MANAGEMENT = "management"
PROXY = "proxy"


class _Counters(MemoryStorage):
    """limits' in-memory storage (slowapi's default), without its sweeping thread.

    After a hit, MemoryStorage starts a 10 ms `threading.Timer` to sweep expired counters
    unless one is still pending: on a proxy that is a new thread on nearly every request,
    started (and waited for) before the request is forwarded. Nothing needs sweeping here:
    an expired counter is dropped when it is next read (`get`, which every `incr` calls
    first), and there is one counter per key, route group and limit. Registered under its
    own scheme, so slowapi builds it from the storage URI like any other.
    """

    STORAGE_SCHEME = ["talktuah-memory"]

    def _MemoryStorage__schedule_expiry(self) -> None:  # overrides the private hook
        return None


class RateLimits:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._limiter = Limiter(key_func=lambda: "", storage_uri="talktuah-memory://").limiter
        self._streams: dict[str, int] = {}
        self._lock = threading.Lock()

    def hit(self, principal: Principal, group: str) -> None:
        if group == PROXY:
            text = principal.proxy_rate_limit or self.settings.proxy_rate_limit
        else:
            text = principal.rate_limit or self.settings.rate_limit
        limit = _parse(text)
        if self._limiter.hit(limit, group, principal.key_id):
            return
        reset_at, _remaining = self._limiter.get_window_stats(limit, group, principal.key_id)
        retry_after = max(1, math.ceil(reset_at - time.time()))
        raise RateLimitedError(
            f"Key {principal.name!r} is over its {group} limit of {text}. Retry in "
            f"{retry_after} s, or ask an admin for a key with a higher limit.",
            retry_after=retry_after,
        )

    def open_stream(self, principal: Principal) -> Callable[[], None]:
        """Take one of the key's stream slots; call the returned function to give it back."""
        cap = principal.max_streams or self.settings.max_streams
        with self._lock:
            open_now = self._streams.get(principal.key_id, 0)
            if open_now >= cap:
                raise RateLimitedError(
                    f"Key {principal.name!r} already has {open_now} streams open (its cap is "
                    f"{cap}). Wait for one to finish.",
                    retry_after=1,
                )
            self._streams[principal.key_id] = open_now + 1
        released = False

        def release() -> None:
            nonlocal released
            with self._lock:
                if released:
                    return
                released = True
                self._streams[principal.key_id] = max(0, self._streams[principal.key_id] - 1)

        return release

    def streams_open(self, principal: Principal) -> int:
        with self._lock:
            return self._streams.get(principal.key_id, 0)
