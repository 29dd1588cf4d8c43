"""API keys: stored hashed in SQLite, each with a name, scopes, optional expiry and limits.

Keys are 256-bit random tokens, so a plain SHA-256 is the right hash (as GitHub and Stripe
do for theirs): a slow password hash would only slow every request, since nobody can
brute-force 2^256. Lookup is by hash, so there is no comparison to time either. The key
from PROXY_API_KEY (or the generated one) is an `admin` key that lives in the settings,
not in the table, so the single-key setup of the seed keeps working unchanged.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from limits import parse_many

from .errors import InvalidKeyRequestError, KeyNotFoundError
from .security import ApiKey
from .state import StateDB

logger = logging.getLogger(__name__)


class Scope(StrEnum):
    INFER = "infer"  # the /v1 proxy, /api/chat, /api/models
    MODELS_READ = "models:read"  # status, lists, progress
    MODELS_WRITE = "models:write"  # download, cancel, delete, switch
    ADMIN = "admin"  # keys, and everything else


KEY_PREFIX = "tt_"
ENV_KEY_ID = "env"
_LAST_USED_EVERY = 30.0  # seconds between last_used_at writes for one key
_WARN_EVERY = 300.0  # seconds between warnings that last_used_at cannot be written

# Bounds on what a key may be created with. Beyond them a value is a mistake or an attack,
# not a wish: NaN or 1e309 days crash the expiry arithmetic, a 20-digit max_streams does not
# fit SQLite's INTEGER, and a limit of 10^30 per second answers Retry-After: 10^30.
MAX_EXPIRES_IN_DAYS = 36_500  # a hundred years
MAX_STREAMS = 10_000
MAX_LIMIT_AMOUNT = 1_000_000_000
MAX_LIMIT_WINDOW = 366 * 86_400  # seconds


def hash_key(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def _now() -> datetime:
    return datetime.now(UTC)


#: What a key store reads the time from (tests give one they advance).
Clock = Callable[[], datetime]


@dataclass(frozen=True)
class Principal:
    """Who is calling: a stored key, or the environment's admin key."""

    key_id: str
    name: str
    scopes: frozenset[Scope]
    rate_limit: str | None = None
    proxy_rate_limit: str | None = None
    max_streams: int | None = None

    def allows(self, scope: Scope) -> bool:
        return Scope.ADMIN in self.scopes or scope in self.scopes


@dataclass
class StoredKey:
    id: str
    name: str
    prefix: str
    scopes: list[str]
    created_at: str
    expires_at: str | None = None
    last_used_at: str | None = None
    revoked_at: str | None = None
    rate_limit: str | None = None
    proxy_rate_limit: str | None = None
    max_streams: int | None = None
    plaintext: str | None = field(default=None, repr=False)  # only right after creation
    clock: Clock = field(default=_now, repr=False, compare=False)  # its store's

    @property
    def status(self) -> str:
        if self.revoked_at:
            return "revoked"
        if self.expires_at and datetime.fromisoformat(self.expires_at) <= self.clock():
            return "expired"
        return "active"

    def to_api(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id, "name": self.name, "prefix": self.prefix, "scopes": self.scopes,
            "status": self.status, "created_at": self.created_at,
            "expires_at": self.expires_at, "last_used_at": self.last_used_at,
            "revoked_at": self.revoked_at, "rate_limit": self.rate_limit,
            "proxy_rate_limit": self.proxy_rate_limit, "max_streams": self.max_streams,
        }  # fmt: skip
        if self.plaintext is not None:
            body["key"] = self.plaintext
        return body


def _check_limit(label: str, value: str) -> None:
    """A rate limit `limits` can parse, counting from 1 to MAX_LIMIT_AMOUNT per window of at
    most MAX_LIMIT_WINDOW (a few words, so also a bounded string)."""
    example = "a limit like '100/minute' or '10/second'"
    if len(value) > 100:
        raise InvalidKeyRequestError(f"{label} is longer than 100 characters; use {example}.")
    try:
        items = parse_many(value)
    except ValueError as exc:
        raise InvalidKeyRequestError(f"{label} {value!r} is not {example}.") from exc
    for item in items:
        window = item.multiples * item.GRANULARITY.seconds
        if not 1 <= item.amount <= MAX_LIMIT_AMOUNT or window > MAX_LIMIT_WINDOW:
            raise InvalidKeyRequestError(
                f"{label} {value!r} is out of range: allow 1 to {MAX_LIMIT_AMOUNT} requests "
                f"per window of at most a year; use {example}."
            )


def _from_row(row: sqlite3.Row, clock: Clock) -> StoredKey:
    data = {k: row[k] for k in row.keys() if k != "key_hash"}
    data["scopes"] = json.loads(data["scopes"])
    return StoredKey(**data, clock=clock)


class KeyStore:
    def __init__(self, state: StateDB, env_key: ApiKey, *, clock: Clock = _now) -> None:
        self.state = state
        self.env_key = env_key
        self.clock = clock  # creation, expiry and revocation times
        self._touched: dict[str, float] = {}
        self._warned_at = -_WARN_EVERY
        self._lock = threading.Lock()

    def create(
        self,
        name: str,
        scopes: list[str],
        *,
        expires_in_days: float | None = None,
        rate_limit: str | None = None,
        proxy_rate_limit: str | None = None,
        max_streams: int | None = None,
    ) -> StoredKey:
        name = name.strip()
        if not name or len(name) > 100:
            raise InvalidKeyRequestError("A key needs a name of 1 to 100 characters.")
        valid = {s.value for s in Scope}
        unknown = sorted(set(scopes) - valid)
        if unknown or not scopes:
            raise InvalidKeyRequestError(
                f"Unknown or missing scopes {unknown or scopes}: choose from {sorted(valid)}."
            )
        for label, value in (("rate_limit", rate_limit), ("proxy_rate_limit", proxy_rate_limit)):
            if value is not None:
                _check_limit(label, value)
        if max_streams is not None and not 1 <= max_streams <= MAX_STREAMS:
            raise InvalidKeyRequestError(
                f"max_streams must be a whole number from 1 to {MAX_STREAMS}; "
                "leave it unset for the server's TALKTUAH_MAX_STREAMS."
            )
        # Written so that NaN fails too (every comparison with NaN is false).
        if expires_in_days is not None and not 0 < expires_in_days <= MAX_EXPIRES_IN_DAYS:
            raise InvalidKeyRequestError(
                f"expires_in_days must be a number above 0 and at most {MAX_EXPIRES_IN_DAYS}; "
                "leave it unset for a key that never expires."
            )
        plaintext = KEY_PREFIX + secrets.token_urlsafe(32)
        key = StoredKey(
            id=uuid.uuid4().hex[:12],
            name=name,
            prefix=plaintext[:10],
            scopes=sorted(set(scopes)),
            created_at=self.clock().isoformat(),
            expires_at=(self.clock() + timedelta(days=expires_in_days)).isoformat()
            if expires_in_days is not None
            else None,
            rate_limit=rate_limit,
            proxy_rate_limit=proxy_rate_limit,
            max_streams=max_streams,
            plaintext=plaintext,
            clock=self.clock,
        )
        self.state.execute(
            "INSERT INTO api_keys (id, name, prefix, key_hash, scopes, created_at, expires_at, "
            "rate_limit, proxy_rate_limit, max_streams) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                key.id, key.name, key.prefix, hash_key(plaintext), json.dumps(key.scopes),
                key.created_at, key.expires_at, rate_limit, proxy_rate_limit, max_streams,
            ),
        )  # fmt: skip
        return key

    def list(self) -> list[StoredKey]:
        rows = self.state.query("SELECT * FROM api_keys ORDER BY created_at, rowid")
        return [_from_row(r, self.clock) for r in rows]

    def get(self, key_id: str) -> StoredKey:
        rows = self.state.query("SELECT * FROM api_keys WHERE id = ?", (key_id,))
        if not rows:
            raise KeyNotFoundError(
                f"No API key {key_id!r}. GET /api/keys lists them.", key_id=key_id
            )
        return _from_row(rows[0], self.clock)

    def revoke(self, key_id: str) -> StoredKey:
        key = self.get(key_id)
        if key.revoked_at is None:
            self.state.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE id = ?",
                (self.clock().isoformat(), key_id),
            )
        return self.get(key_id)

    def authenticate(self, presented: str) -> Principal | None:
        """The principal for a presented key, or None if unknown, revoked or expired."""
        if self.env_key.matches(presented):
            return Principal(ENV_KEY_ID, "PROXY_API_KEY", frozenset({Scope.ADMIN}))
        rows = self.state.query("SELECT * FROM api_keys WHERE key_hash = ?", (hash_key(presented),))
        if not rows:
            return None
        key = _from_row(rows[0], self.clock)
        if key.status != "active":
            return None
        self._touch(key.id)
        return Principal(
            key_id=key.id,
            name=key.name,
            scopes=frozenset(Scope(s) for s in key.scopes),
            rate_limit=key.rate_limit,
            proxy_rate_limit=key.proxy_rate_limit,
            max_streams=key.max_streams,
        )

    def _touch(self, key_id: str) -> None:
        """Record last use, at most every 30 s per key: not a database write per request.

        Best effort: `last_used_at` is a hint for admins, so a database that cannot be
        written (disk full, read-only mount) must not turn into failed authentication.
        The failure is logged at most every _WARN_EVERY seconds, not on every request.
        """
        now = time.monotonic()
        with self._lock:
            if now - self._touched.get(key_id, -_LAST_USED_EVERY) < _LAST_USED_EVERY:
                return
            self._touched[key_id] = now
        try:
            self.state.execute(
                "UPDATE api_keys SET last_used_at = ? WHERE id = ?",
                (self.clock().isoformat(), key_id),
            )
        except sqlite3.Error as exc:
            with self._lock:
                warn = now - self._warned_at >= _WARN_EVERY
                if warn:
                    self._warned_at = now
            if warn:
                logger.warning(
                    "Could not record when API key %s was last used (%s); authentication "
                    "goes on. Free space on the disk holding %s or make it writable.",
                    key_id, exc, self.state.path,
                )  # fmt: skip
