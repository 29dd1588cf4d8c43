"""The scope matrix, derived from the app's own routes, plus per-key rate limits."""

from __future__ import annotations

import logging
import re

import pytest
from fastapi.testclient import TestClient

from talktuah.api.app import DOC_PATHS, PUBLIC_PATHS
from talktuah.api.scopes import ROUTE_SCOPES
from talktuah.keys import Scope
from talktuah.services import Services

from ..support.clock import FakeClock
from ..support.constants import API_KEY


def app_routes(client: TestClient) -> set[tuple[str, str]]:
    schema = client.app.openapi()  # type: ignore[attr-defined]
    return {
        (method.upper(), path)
        for path, operations in schema["paths"].items()
        if path not in PUBLIC_PATHS | DOC_PATHS
        for method in operations
    }


def key_with(client: TestClient, *scopes: str, **limits: object) -> str:
    response = client.post(
        "/api/keys", json={"name": "+".join(scopes) or "none", "scopes": list(scopes), **limits}
    )
    assert response.status_code == 201, response.text
    key: str = response.json()["key"]
    return key


def test_every_route_declares_a_scope_and_no_entry_is_stale(client: TestClient) -> None:
    routes = app_routes(client)
    assert routes - ROUTE_SCOPES.keys() == set(), "routes without a scope"
    assert ROUTE_SCOPES.keys() - routes == set(), "scopes for routes that do not exist"


def test_scope_matrix(client: TestClient) -> None:
    """Each scope's key against every route: allowed routes get past auth, others get 403."""
    keys = {scope: key_with(client, scope.value) for scope in Scope}
    for method, template in sorted(app_routes(client)):
        path = re.sub(r"\{[^}]+\}", "missing-id", template)
        params = {"model_id": "org/none", "auto": "false"}
        needed = ROUTE_SCOPES[(method, template)]
        for scope, key in keys.items():
            response = client.request(
                method, path, params=params, json={} if method == "POST" else None,
                headers={"Authorization": f"Bearer {key}"},
            )  # fmt: skip
            allowed = scope == needed or scope == Scope.ADMIN
            where = (
                f"{method} {template} with a {scope} key: {response.status_code} {response.text}"
            )
            if allowed:
                assert response.status_code not in (401, 403), where
            else:
                assert response.status_code == 403, where
                assert f"lacks the '{needed}' scope" in response.json()["detail"], where


def test_keys_api_lists_and_revokes(client: TestClient) -> None:
    created = client.post("/api/keys", json={"name": "n8n", "scopes": ["infer"]}).json()
    assert created["key"].startswith("tt_") and "not shown again" in created["message"]
    listed = client.get("/api/keys").json()
    assert [k["name"] for k in listed["keys"]] == ["n8n"]
    assert "key" not in listed["keys"][0]
    anon = {"Authorization": f"Bearer {created['key']}"}
    assert client.get("/v1/models", headers=anon).status_code == 502  # allowed; no engine
    revoked = client.delete(f"/api/keys/{created['id']}")
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
    after = client.get("/v1/models", headers=anon)
    assert after.status_code == 401 and "revoked" in after.json()["detail"]
    assert client.delete("/api/keys/nope").status_code == 404
    bad = client.post("/api/keys", json={"name": "x", "scopes": ["everything"]})
    assert bad.status_code == 422 and "choose from" in bad.json()["detail"]


def test_expired_key_is_401(client: TestClient, services: Services) -> None:
    clock = FakeClock()
    services.keys.clock = clock.utc
    key = key_with(client, "models:read", expires_in_days=0.5 / 86400)
    headers = {"Authorization": f"Bearer {key}"}
    assert client.get("/api/model-status", headers=headers).status_code == 200
    clock.advance(0.6)
    assert client.get("/api/model-status", headers=headers).status_code == 401


def test_rate_limit_per_key_with_retry_after(client: TestClient) -> None:
    limited = key_with(client, "models:read", rate_limit="3/minute")
    other = key_with(client, "models:read", rate_limit="3/minute")
    for _ in range(3):
        ok = client.get("/api/model-status", headers={"Authorization": f"Bearer {limited}"})
        assert ok.status_code == 200
    over = client.get("/api/model-status", headers={"Authorization": f"Bearer {limited}"})
    assert over.status_code == 429
    assert 1 <= int(over.headers["Retry-After"]) <= 60
    assert "3/minute" in over.json()["detail"]
    unaffected = client.get("/api/model-status", headers={"Authorization": f"Bearer {other}"})
    assert unaffected.status_code == 200


def test_proxy_and_management_limits_are_separate(client: TestClient) -> None:
    key = key_with(client, "infer", "models:read", proxy_rate_limit="2/minute")
    headers = {"Authorization": f"Bearer {key}"}
    assert [client.get("/v1/models", headers=headers).status_code for _ in range(3)] == [
        502, 502, 429,
    ]  # fmt: skip
    assert client.get("/api/model-status", headers=headers).status_code == 200


def test_the_plaintext_key_is_never_logged(
    client: TestClient, services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    key = key_with(client, "infer", "models:read")
    headers = {"Authorization": f"Bearer {key}"}
    client.get("/api/model-status", headers=headers)
    client.get("/v1/models", headers=headers)
    client.get("/api/model-status", headers={"Authorization": "Bearer tt_wrong"})
    assert caplog.records, "the check needs captured logs to mean anything"
    assert key not in caplog.text and API_KEY not in caplog.text
    db_bytes = b"".join(p.read_bytes() for p in services.settings.home.glob("state.db*"))
    assert key.encode() not in db_bytes
