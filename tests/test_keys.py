"""KeyStore: hashed storage, scopes, expiry, revocation."""

from __future__ import annotations

import pytest

from talktuah.errors import InvalidKeyRequestError, KeyNotFoundError
from talktuah.keys import ENV_KEY_ID, KeyStore, Scope
from talktuah.services import Services

from .support.clock import FakeClock
from .support.constants import API_KEY


@pytest.fixture
def keys(services: Services) -> KeyStore:
    return services.keys


def test_created_key_is_shown_once_and_stored_hashed(keys: KeyStore, services: Services) -> None:
    key = keys.create("n8n", ["infer", "models:read"])
    assert key.plaintext is not None and key.plaintext.startswith("tt_")
    assert len(key.plaintext) > 40 and key.prefix == key.plaintext[:10]
    listed = keys.get(key.id)
    assert listed.plaintext is None and "key" not in listed.to_api()
    principal = keys.authenticate(key.plaintext)
    assert principal is not None and principal.key_id == key.id
    assert principal.scopes == {Scope.INFER, Scope.MODELS_READ}
    assert principal.allows(Scope.INFER) and not principal.allows(Scope.MODELS_WRITE)
    db_bytes = b"".join(p.read_bytes() for p in services.settings.home.glob("state.db*"))
    assert key.plaintext.encode() not in db_bytes


def test_environment_key_is_admin(keys: KeyStore) -> None:
    principal = keys.authenticate(API_KEY)
    assert principal is not None and principal.key_id == ENV_KEY_ID
    assert all(principal.allows(scope) for scope in Scope)


def test_revoked_and_expired_keys_stop_working(keys: KeyStore) -> None:
    clock = FakeClock()
    keys.clock = clock.utc
    revoked = keys.create("old", ["infer"])
    expiring = keys.create("temp", ["infer"], expires_in_days=0.5 / 86400)
    assert revoked.plaintext and expiring.plaintext
    assert keys.authenticate(revoked.plaintext) is not None
    assert keys.revoke(revoked.id).status == "revoked"
    assert keys.authenticate(revoked.plaintext) is None
    assert keys.get(expiring.id).status == "active"
    clock.advance(0.6)
    assert keys.get(expiring.id).status == "expired"
    assert keys.authenticate(expiring.plaintext) is None
    assert keys.authenticate("tt_not-a-key") is None


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"name": "", "scopes": ["infer"]}, "name"),
        ({"name": "x", "scopes": []}, "choose from"),
        ({"name": "x", "scopes": ["root"]}, "['root']"),
        ({"name": "x", "scopes": ["infer"], "rate_limit": "lots"}, "'100/minute'"),
        ({"name": "x", "scopes": ["infer"], "max_streams": 0}, "max_streams"),
        ({"name": "x", "scopes": ["infer"], "expires_in_days": -1}, "expires_in_days"),
    ],
)
def test_bad_key_requests_say_what_to_fix(
    keys: KeyStore, kwargs: dict[str, object], fragment: str
) -> None:
    with pytest.raises(InvalidKeyRequestError, match=None) as info:
        keys.create(**kwargs)  # type: ignore[arg-type]
    assert fragment in str(info.value)


def test_unknown_key_id(keys: KeyStore) -> None:
    with pytest.raises(KeyNotFoundError, match="GET /api/keys"):
        keys.revoke("nope")


def test_last_used_is_recorded(keys: KeyStore) -> None:
    key = keys.create("user", ["infer"])
    assert key.plaintext is not None
    assert keys.get(key.id).last_used_at is None
    keys.authenticate(key.plaintext)
    assert keys.get(key.id).last_used_at is not None
