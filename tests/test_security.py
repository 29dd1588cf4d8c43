"""The API key: generated once with mode 0600, reused, and never weak beyond loopback."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from talktuah.config import Settings
from talktuah.errors import InsecureConfigError
from talktuah.security import ApiKey, check_exposure, resolve_api_key, weakness


def test_key_generated_once_with_mode_0600_and_reused(home: Path) -> None:
    settings = Settings(home=home)
    first = resolve_api_key(settings)
    assert first.source == "generated"
    assert weakness(first.value) is None
    mode = stat.S_IMODE(settings.api_key_path.stat().st_mode)
    assert mode == 0o600
    second = resolve_api_key(settings)
    assert second.source == "file" and second.value == first.value


def test_environment_key_wins_and_writes_nothing(home: Path) -> None:
    key = resolve_api_key(Settings(home=home, proxy_api_key="an-env-key-that-is-long"))
    assert (key.source, key.value) == ("env", "an-env-key-that-is-long")
    assert not (home / "api_key").exists()


def test_empty_key_file_is_replaced(home: Path) -> None:
    home.mkdir()
    (home / "api_key").write_text("\n")
    key = resolve_api_key(Settings(home=home))
    assert key.source == "generated" and len(key.value) >= 32
    assert (home / "api_key").read_text().strip() == key.value


@pytest.mark.parametrize(
    "key", ["", "change-me", "changeme", "CHANGEME", "secret", "short-key-15chr"]
)
def test_weak_keys_are_named(key: str) -> None:
    assert weakness(key) is not None


@pytest.mark.parametrize("key", ["change-me", "changeme", "secret", "", "0123456789"])
def test_weak_key_beyond_loopback_is_refused(home: Path, key: str) -> None:
    settings = Settings(home=home, host="0.0.0.0", proxy_api_key=key)
    with pytest.raises(InsecureConfigError, match="PROXY_API_KEY"):
        check_exposure(settings, ApiKey(key, "env"))


def test_weak_key_on_loopback_and_strong_key_anywhere_are_accepted(home: Path) -> None:
    check_exposure(Settings(home=home, host="127.0.0.1"), ApiKey("changeme", "env"))
    strong = ApiKey("x7Fq-2kLp9Zr4Wv8Yt3Nb6Hc", "env")
    check_exposure(Settings(home=home, host="0.0.0.0"), strong)


def test_key_comparison() -> None:
    key = ApiKey("the-right-key-0123456789", "env")
    assert key.matches("the-right-key-0123456789")
    assert not key.matches("the-right-key-012345678")
    assert not key.matches("")
    assert not key.matches("ü-non-ascii")
