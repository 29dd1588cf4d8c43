"""The API key: where it comes from, where it is kept, and when we refuse to serve."""

from __future__ import annotations

import hmac
import os
import secrets
from dataclasses import dataclass

from .config import Settings
from .errors import InsecureConfigError, KeyRotationError

WEAK_KEYS = frozenset({"change-me", "changeme", "change_me", "secret", "password", "test"})
MIN_KEY_LENGTH = 16


@dataclass(frozen=True)
class ApiKey:
    value: str
    source: str  # "env", "file" or "generated"

    def matches(self, presented: str) -> bool:
        """Constant-time comparison, so response timing leaks nothing about the key."""
        return hmac.compare_digest(self.value.encode(), presented.encode())


def weakness(key: str) -> str | None:
    """Why `key` is guessable, or None when it is acceptable."""
    if not key:
        return "it is empty"
    if key.strip().lower() in WEAK_KEYS:
        return f"{key!r} is a well-known placeholder"
    if len(key) < MIN_KEY_LENGTH:
        return f"it is shorter than {MIN_KEY_LENGTH} characters"
    return None


def resolve_api_key(settings: Settings) -> ApiKey:
    """The key from `PROXY_API_KEY`, else the stored one, else a new one stored 0600.

    The file is created with O_EXCL and mode 0600 in one call so there is no moment when
    another user could read it, and a second process racing us reuses the first's key.
    """
    if settings.proxy_api_key:
        return ApiKey(settings.proxy_api_key, "env")
    path = settings.api_key_path
    if path.exists():
        stored = path.read_text().strip()
        if stored:
            return ApiKey(stored, "file")
        path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return ApiKey(path.read_text().strip(), "file")
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    return ApiKey(key, "generated")


def rotate_generated_key(settings: Settings, current: ApiKey) -> ApiKey:
    """Replace the generated admin key with a new one, on disk (0600) and in use at once.

    A key from PROXY_API_KEY belongs to whoever set the environment: we cannot change it.
    """
    if current.source == "env":
        raise KeyRotationError(
            "The admin key comes from PROXY_API_KEY: change it where it is set (.env, the "
            "service definition) and restart TalkTuah."
        )
    key = secrets.token_urlsafe(32)
    path = settings.api_key_path
    tmp = path.with_name(path.name + ".new")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    os.replace(tmp, path)
    return ApiKey(key, "file")


def check_exposure(settings: Settings, key: ApiKey) -> None:
    """Refuse to listen beyond loopback with a key someone could guess."""
    if settings.is_loopback:
        return
    reason = weakness(key.value)
    if reason is not None:
        raise InsecureConfigError(
            f"Refusing to listen on {settings.host}:{settings.port} because PROXY_API_KEY is "
            f"weak: {reason}. Set a strong key, e.g. "
            "`export PROXY_API_KEY=$(python -c 'import secrets; print(secrets.token_urlsafe(32))')`"
            ", or unset PROXY_API_KEY to have one generated, or bind to 127.0.0.1."
        )
