"""/api/healthz: healthy, degraded and unhealthy, for the reasons an operator cares about."""

from __future__ import annotations

import json
import os
import signal

import pytest
from fastapi.testclient import TestClient

from talktuah.services import Services

from .support.engine import MakeClient, wait_status
from .support.fs import small_filesystem


def health(client: TestClient) -> dict[str, object]:
    response = client.get("/api/healthz", headers={"Authorization": ""})
    body: dict[str, object] = response.json()
    body["http_status"] = response.status_code
    return body


@pytest.mark.slow  # kills an engine process and waits out its restart backoff: ~2 s
def test_killed_engine_degrades_until_restarted(make_client: MakeClient) -> None:
    client = make_client(engine_restart_backoff=1.0)
    wait_status(client, lambda s: s["status"] == "ready")
    assert health(client)["status"] == "healthy"
    services: Services = client.app.state.services  # type: ignore[attr-defined]
    pid = services.engine.driver.process.pid  # type: ignore[attr-defined]
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    wait_status(client, lambda s: s["engine_state"] != "ready", 10)
    degraded = health(client)
    assert degraded["status"] == "degraded" and degraded["upstream_healthy"] is False
    wait_status(client, lambda s: s["engine_state"] == "ready", 20)
    assert health(client)["status"] == "healthy"


def test_database_not_writable_degrades_and_unreadable_is_unhealthy(
    client: TestClient, services: Services
) -> None:
    services.state.execute("PRAGMA query_only = 1")  # what a read-only volume looks like
    body = health(client)
    assert body["details"]["database"] == "not writable"  # type: ignore[index]
    assert body["status"] == "degraded"
    services.state.close()
    broken = health(client)
    assert broken["status"] == "unhealthy" and broken["http_status"] == 503


def test_nearly_full_disk_degrades(client: TestClient, services: Services) -> None:
    models_dir = services.store.models_dir
    with small_filesystem(models_dir, "4m"):
        assert health(client)["details"]["disk"] == "ok"  # type: ignore[index]
        (models_dir / "filler").write_bytes(b"\0" * (4 * 1024 * 1024 - 64 * 1024))
        body = health(client)
        assert str(body["details"]["disk"]).startswith("nearly full")  # type: ignore[index]
        assert body["status"] == "degraded"
        assert str(models_dir) not in json.dumps(body), "a public route reveals no paths"
