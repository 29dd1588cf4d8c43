"""Every route but the public ones answers 401 without the right bearer key.

Nothing here changes the app: the tests share the module's (`module_app`)."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from talktuah.api.app import DOC_PATHS, PUBLIC_PATHS


def _protected_calls(client: TestClient) -> list[tuple[str, str]]:
    """Every (method, path) the app serves, from its OpenAPI schema.

    The schema is FastAPI's public, flattened view of all routes, however routers nest, so a
    route added later is checked without touching this test.
    """
    schema = client.app.openapi()  # type: ignore[attr-defined]
    calls = []
    for template, operations in schema["paths"].items():
        if template in PUBLIC_PATHS | DOC_PATHS:
            continue
        path = re.sub(r"\{[^}]+\}", "some-id", template)
        calls.extend((method.upper(), path) for method in sorted(operations))
    return calls


def test_route_enumeration_sees_the_protected_routes(module_anon_client: TestClient) -> None:
    calls = _protected_calls(module_anon_client)
    assert ("DELETE", "/api/delete-model") in calls
    assert ("GET", "/api/model-status") in calls
    assert ("POST", "/api/download-model") in calls


@pytest.mark.parametrize("header", [None, "Bearer wrong-key-0123456789abcdef", "Basic abc", ""])
def test_every_protected_route_needs_the_key(
    module_anon_client: TestClient, header: str | None
) -> None:
    headers = {"Authorization": header} if header is not None else {}
    for method, path in _protected_calls(module_anon_client):
        response = module_anon_client.request(method, path, headers=headers)
        assert response.status_code == 401, (method, path, response.text)
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert "API key" in response.json()["detail"]


def test_the_right_key_gets_through(module_client: TestClient) -> None:
    assert module_client.get("/api/model-status").status_code == 200


def test_public_routes_need_no_key(module_anon_client: TestClient) -> None:
    for path in PUBLIC_PATHS | {"/docs", "/openapi.json"}:
        assert module_anon_client.get(path).status_code == 200, path
