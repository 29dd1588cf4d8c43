"""DirectRoutes: the proxy's hot routes reach their handlers without FastAPI's stack,
with the same auth, the same errors and the same documentation."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from talktuah.api import create_app
from talktuah.api.direct import DIRECT, DirectRoutes
from talktuah.config import Settings
from talktuah.security import ApiKey
from talktuah.services import Services

from ..support.constants import API_KEY


def test_every_direct_route_is_the_documented_fastapi_route(client: TestClient) -> None:
    paths = client.app.openapi()["paths"]  # type: ignore[attr-defined]
    for (method, path), endpoint in DIRECT.items():
        operation = paths[path][method.lower()]
        assert operation["operationId"].startswith(endpoint.__name__), (path, operation)
        assert "401" in operation["responses"] and "429" in operation["responses"]


class Recorder:
    """Stands for FastAPI behind the middleware: records what reached it."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.seen.append((scope["method"], scope["path"]))
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})


def _call(services: Services, method: str, path: str, **kwargs: Any) -> tuple[int, Any, list]:
    fastapi_app = create_app(services, close_on_shutdown=False)
    fastapi_app.state.services = services
    behind = Recorder()
    direct = DirectRoutes(behind, fastapi_app=fastapi_app)

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=direct)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            return await http.request(method, path, **kwargs)

    response = asyncio.run(go())
    body = response.json() if response.content else None
    return response.status_code, body, behind.seen


def test_a_direct_route_is_answered_without_reaching_fastapi(services: Services) -> None:
    status, body, seen = _call(services, "POST", "/v1/chat/completions", json={})
    assert status == 401 and "API key" in body["detail"] and body["error"]["code"] == 401
    assert seen == []
    headers = {"Authorization": f"Bearer {API_KEY}"}
    status, body, seen = _call(
        services, "POST", "/v1/chat/completions", content=b"{not json", headers=headers
    )
    assert status == 400 and "not valid JSON" in body["detail"]
    assert seen == []


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/v1/chat/completions"), ("POST", "/v1/chat/completions/"), ("GET", "/v1/models")],
)
def test_anything_else_goes_on_to_fastapi(services: Services, method: str, path: str) -> None:
    status, _body, seen = _call(services, method, path)
    assert (status, seen) == (204, [(method, path)])


def test_an_unexpected_error_on_a_direct_route_is_a_500_with_the_request_id(
    client: TestClient, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the engine connection caught fire")

    monkeypatch.setattr(services.proxy, "forward", broken)
    response = client.post(
        "/v1/chat/completions",
        json={"messages": [{"role": "user", "content": "hi"}]},
        headers={"X-Request-ID": "direct-1"},
    )
    assert response.status_code == 500
    assert response.json()["request_id"] == "direct-1" == response.headers["X-Request-ID"]


def test_direct_routes_get_the_same_middleware_as_every_route(tmp_path: Path) -> None:
    """Request id, CORS, metrics and the body limit apply to the direct routes as well."""
    settings = Settings(
        home=tmp_path, proxy_api_key=API_KEY, cors_origins=["http://dashboard.lan"],
        max_request_bytes=2048,
    )  # fmt: skip
    services = Services.build(settings, ApiKey(API_KEY, "env"))  # type: ignore[arg-type]
    headers = {"Origin": "http://dashboard.lan", "X-Request-ID": "cors-1"}
    try:
        with TestClient(create_app(services)) as anon:
            refused = anon.post("/v1/chat/completions", json={}, headers=headers)
            assert refused.status_code == 401
            assert refused.headers["access-control-allow-origin"] == "http://dashboard.lan"
            assert refused.headers["x-request-id"] == "cors-1" == refused.json()["request_id"]
            big = anon.post("/v1/chat/completions", content=b"x" * 5000, headers=headers)
            assert big.status_code == 413
            metrics = anon.get("/metrics").text
    finally:
        services.close()
    assert 'route="/v1/chat/completions",status="401"' in metrics
