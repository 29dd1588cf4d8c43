"""Request ids, body limits, CORS and structured logs."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from talktuah.api import create_app
from talktuah.config import Settings
from talktuah.logs import configure_logging
from talktuah.security import ApiKey
from talktuah.services import Services

from ..support.constants import API_KEY


def test_every_error_reply_carries_the_request_id(client: TestClient) -> None:
    limited = client.post(
        "/api/keys", json={"name": "slow", "scopes": ["models:read"], "rate_limit": "1/minute"}
    ).json()["key"]
    reader = {"Authorization": f"Bearer {limited}"}
    client.get("/api/model-status", headers=reader)
    errors = [
        client.get("/api/model-status", headers={"Authorization": "Bearer tt_nope"}),  # 401
        client.get("/api/keys", headers=reader),  # 403 (before the limit: scope first)
        client.get("/api/model-status", headers=reader),  # 429
        client.get("/no/such/route"),  # 404 from routing
        client.get("/api/downloads/nope"),  # 404 from us
        client.delete("/api/delete-model"),  # 422 from validation
        client.delete("/api/delete-model", params={"model_id": "../x"}),  # 422 from us
        client.post(
            "/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]}
        ),  # 502: no engine
        client.post("/v1/chat/completions", content=b"{"),  # 400
        client.post("/api/keys", content=b"x" * (2 * 1024 * 1024)),  # 413
    ]
    assert sorted({r.status_code for r in errors}) == [400, 401, 403, 404, 413, 422, 429, 502]
    for response in errors:
        rid = response.headers["X-Request-ID"]
        assert response.json()["request_id"] == rid, (response.status_code, response.text)


def test_a_sane_client_request_id_is_kept_and_a_bad_one_replaced(client: TestClient) -> None:
    kept = client.get("/api/downloads/nope", headers={"X-Request-ID": "n8n-run-42"})
    assert kept.headers["X-Request-ID"] == "n8n-run-42" == kept.json()["request_id"]
    replaced = client.get("/api/downloads/nope", headers={"X-Request-ID": "bad id;<script>" * 10})
    assert len(replaced.headers["X-Request-ID"]) == 32


def test_bodies_over_the_limit_are_refused_even_without_a_length(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(40):
            yield b"x" * 64 * 1024

    response = client.post("/v1/chat/completions", content=chunks())
    assert response.status_code == 413 and "TALKTUAH_MAX_REQUEST_BYTES" in response.json()["detail"]


def _app(home: Path, **settings: object) -> TestClient:
    services = Services.build(
        Settings(home=home, proxy_api_key=API_KEY, **settings),
        ApiKey(API_KEY, "env"),  # type: ignore[arg-type]
    )
    return TestClient(create_app(services))


def test_cors_is_off_by_default_and_opt_in(home: Path, tmp_path: Path) -> None:
    preflight = {
        "Origin": "http://dashboard.lan",
        "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "authorization",
    }
    with _app(home) as closed:
        answer = closed.options("/api/model-status", headers=preflight)
        assert "access-control-allow-origin" not in answer.headers
    with _app(tmp_path / "other", cors_origins=["http://dashboard.lan"]) as opened:
        answer = opened.options("/api/model-status", headers=preflight)
        assert answer.headers["access-control-allow-origin"] == "http://dashboard.lan"
        other = opened.options(
            "/api/model-status", headers=preflight | {"Origin": "http://evil.example"}
        )
        assert "access-control-allow-origin" not in other.headers


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers, root.level = handlers, level


def test_json_logs_carry_request_ids_and_no_keys(
    client: TestClient, capsys: pytest.CaptureFixture[str], restore_logging: None
) -> None:
    configure_logging("json", "info", [API_KEY])
    key = client.post("/api/keys", json={"name": "x", "scopes": ["infer"]}).json()["key"]
    logging.getLogger("talktuah.test").info("presented %s and Bearer %s", API_KEY, key)
    client.get("/api/downloads/nope", headers={"X-Request-ID": "trace-7"})
    logging.getLogger("talktuah.test").info("outside a request")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line]
    assert lines and all({"time", "level", "logger", "message"} <= set(e) for e in lines)
    text = json.dumps(lines)
    assert API_KEY not in text and key not in text and "[redacted]" in text
    assert lines[-1]["message"] == "outside a request" and "request_id" not in lines[-1]


def test_an_unexpected_error_is_a_500_with_the_request_id(
    client: TestClient, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression (found by bench/soak.py): the 500 reply carried `request_id: null`."""

    def broken() -> list[object]:
        raise RuntimeError("the disk caught fire")

    monkeypatch.setattr(services.store, "list", broken)
    response = client.get("/api/models/local", headers={"X-Request-ID": "soak-1"})
    assert response.status_code == 500
    assert response.json()["request_id"] == "soak-1" == response.headers["X-Request-ID"]
    assert "report it with that id" in response.json()["detail"]


def test_the_dashboard_is_public_and_locked_down(anon_client: TestClient) -> None:
    page = anon_client.get("/ui/")
    assert page.status_code == 200 and "<title>" in page.text
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert "content-security-policy" not in anon_client.get("/").headers


def test_the_access_log_is_written_when_the_response_ends(
    client: TestClient, capsys: pytest.CaptureFixture[str], restore_logging: None
) -> None:
    configure_logging("json", "info", [API_KEY])
    client.get("/api/downloads/nope?verbose=1", headers={"X-Request-ID": "trace-8"})
    # What the proxy's engine client does per chat (any transport: the line is httpx's own).
    with httpx.Client(transport=httpx.MockTransport(lambda _: httpx.Response(200))) as engine:
        engine.get("http://engine/v1/models")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line]
    access = [e for e in lines if e["logger"] == "talktuah.access"]
    assert len(access) == 1, lines
    entry = access[0]
    assert entry["request_id"] == "trace-8"
    assert '"GET /api/downloads/nope?verbose=1 HTTP/1.1" 404 ' in entry["message"]
    assert float(entry["message"].rsplit(" ", 2)[1]) > 0  # the duration in ms
    # httpx's own line per request would be a second access line, before the first byte
    assert not [e for e in lines if e["logger"] == "httpx"]


def test_the_access_log_can_be_turned_off(
    services: Services, capsys: pytest.CaptureFixture[str], restore_logging: None
) -> None:
    services.settings.access_log = False
    configure_logging("json", "info", [API_KEY])
    app = create_app(services, close_on_shutdown=False)
    with TestClient(app, headers={"Authorization": f"Bearer {API_KEY}"}) as quiet:
        assert quiet.get("/api/downloads/nope").status_code == 404
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line]
    assert not [e for e in lines if e["logger"] == "talktuah.access"]
