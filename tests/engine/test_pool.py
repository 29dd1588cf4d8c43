"""The engine pool against the stand-in engine: several models at once, load on demand,
limits, keep-alive, crashes and failed loads of one model beside others (issue 18)."""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from talktuah.services import Services

from ..support.clock import FakeClock
from ..support.engine import CHAT, MODEL_FILES, MakeClient, fail_log, wait_status
from ..support.eventually import eventually
from ..support.tiny_model import install_in_cache


def ready(make_client: MakeClient, **overrides: Any) -> tuple[TestClient, Services]:
    client = make_client(**overrides)
    wait_status(client, lambda s: s["status"] == "ready")
    return client, client.app.state.services  # type: ignore[attr-defined]


def ps(client: TestClient) -> dict[str, dict[str, Any]]:
    response = client.get("/api/ps")
    assert response.status_code == 200, response.text
    return {row["model"]: row for row in response.json()["models"]}


def chat(client: TestClient, model: str, **extra: Any) -> Any:
    return client.post("/v1/chat/completions", json=CHAT | {"model": model} | extra)


def pid_of(services: Services, model: str) -> int | None:
    return services.engine.pool.instances[model].driver.process.pid  # type: ignore[attr-defined, no-any-return]


def metric(client: TestClient, line_start: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_two_models_answer_alternately_without_a_switch(make_client: MakeClient) -> None:
    client, services = ready(make_client)
    a_pid = pid_of(services, "org/a")
    for model in ("org/a", "org/b", "org/a", "org/b"):
        answer = chat(client, model)
        assert answer.status_code == 200 and answer.json()["model"] == model, answer.text
    loaded = ps(client)
    assert {m: r["state"] for m, r in loaded.items()} == {"org/a": "ready", "org/b": "ready"}
    assert loaded["org/a"]["pinned"] and not loaded["org/b"]["pinned"]
    assert loaded["org/b"]["expires_at"] and loaded["org/a"]["expires_at"] is None
    assert loaded["org/b"]["memory_bytes"] > 0 and loaded["org/b"]["in_flight"] == 0
    assert pid_of(services, "org/a") == a_pid, "A's engine is the same process"
    assert pid_of(services, "org/b") != a_pid
    default = client.post("/v1/chat/completions", json=CHAT | {"model": "default"})
    assert default.json()["model"] == "org/a"
    status = client.get("/api/model-loading-status").json()
    assert status["serving_model"] == "org/a" and status["status"] == "ready"
    listed = {m["id"]: m["loaded"] for m in client.get("/v1/models").json()["data"]}
    assert listed == {"org/a": True, "org/b": True}


def test_ten_concurrent_first_requests_load_once(
    make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, _ = ready(make_client)
    monkeypatch.setenv("FAKE_ENGINE_START_DELAY", "0.5")
    with ThreadPoolExecutor(10) as workers:
        answers = list(workers.map(lambda _: chat(client, "org/b"), range(10)))
    assert [a.status_code for a in answers] == [200] * 10
    assert metric(client, 'talktuah_model_loads_total{model="org/b"}') == 1
    assert metric(client, 'talktuah_model_load_wait_seconds_count{model="org/b"}') == 10


def test_a_model_not_downloaded_is_404_naming_the_pull(make_client: MakeClient) -> None:
    client, services = ready(make_client)
    missing = chat(client, "org/never")
    assert missing.status_code == 404
    assert "talktuah pull org/never" in missing.json()["detail"]
    assert "org/never" not in services.engine.pool.instances, "never a silent pull"


def test_a_third_model_evicts_the_least_recently_used_idle_one_never_a_streaming_one(
    make_client: MakeClient, home: Path
) -> None:
    install_in_cache(home / "models" / "hub", "org/c", MODEL_FILES | {"id": b"org/c"})
    client, services = ready(make_client, max_loaded_models=2)
    assert chat(client, "org/b").status_code == 200
    # org/b streams while org/c loads: the pinned default and the busy org/b cannot go.
    body = CHAT | {"model": "org/b", "stream": True, "max_tokens": 40}
    with ThreadPoolExecutor(1) as pool:
        streamed = pool.submit(lambda: client.post("/v1/chat/completions", json=body))
        eventually(lambda: services.engine.pool.instances["org/b"].traffic.in_flight == 1)
        full = client.post("/v1/chat/completions", json=CHAT | {"model": "org/c"})
        answer = streamed.result(timeout=30)
    assert answer.status_code == 200 and answer.text.rstrip().endswith("data: [DONE]")
    assert full.status_code == 200, full.text  # it queued until org/b finished
    eventually(lambda: set(ps(client)) == {"org/a", "org/c"})
    assert (
        metric(client, 'talktuah_model_evictions_total{model="org/b",reason="max_loaded_models"}')
        == 1
    )


def test_nothing_to_evict_queues_then_503_naming_what_is_busy(
    make_client: MakeClient,
) -> None:
    client, services = ready(make_client, max_loaded_models=1, proxy_load_wait=0.5)
    full = chat(client, "org/b")
    assert full.status_code == 503 and "Retry-After" in full.headers
    assert "pinned: org/a" in full.json()["detail"]


def test_keep_alive_zero_and_seconds_unload_idle_models_but_never_the_default(
    make_client: MakeClient,
) -> None:
    clock = FakeClock()
    client, services = ready(make_client, keep_alive="1s", clock=clock)
    assert chat(client, "org/b", keep_alive=0).status_code == 200
    eventually(lambda: "org/b" not in ps(client), timeout=5)
    assert chat(client, "org/b", keep_alive="2s").status_code == 200
    clock.advance(1.9)
    time.sleep(0.5)  # the instance looks at least twice (TALKTUAH_ENGINE_HEALTH_INTERVAL 0.2)
    assert ps(client)["org/b"]["state"] == "ready", "1.9 s idle of 2 s: still loaded"
    clock.advance(0.2)
    eventually(lambda: "org/b" not in ps(client), timeout=5)
    clock.advance(3600)
    time.sleep(0.5)
    assert ps(client)["org/a"]["state"] == "ready", "the default is pinned: an hour idle"
    assert metric(client, 'talktuah_model_evictions_total{model="org/b",reason="idle"}') == 2
    bad = chat(client, "org/b", keep_alive="soon")
    assert bad.status_code == 422 and "5m" in bad.json()["detail"]


def test_keep_alive_never_reaches_the_engine(make_client: MakeClient, engine_events: Path) -> None:
    client, _ = ready(make_client)
    assert chat(client, "org/a", keep_alive="5m").status_code == 200
    assert "keep_alive" not in engine_events.read_text()


def test_load_unload_and_ps_routes(make_client: MakeClient) -> None:
    client, _ = ready(make_client)
    loading = client.post("/api/load-model", params={"model_id": "org/b", "keep_alive": "-1"})
    assert loading.status_code == 202, loading.text
    eventually(lambda: ps(client).get("org/b", {}).get("state") == "ready")
    assert ps(client)["org/b"]["expires_at"] is None, "keep_alive=-1: forever"
    again = client.post("/api/load-model", params={"model_id": "org/b"})
    assert again.status_code == 200 and again.json()["status"] == "ready"
    assert client.post("/api/unload-model", params={"model_id": "org/b"}).status_code == 200
    eventually(lambda: "org/b" not in ps(client))
    assert client.post("/api/unload-model", params={"model_id": "org/b"}).status_code == 404
    assert client.post("/api/load-model", params={"model_id": "org/zz"}).status_code == 404


def test_a_killed_instance_restarts_while_the_other_serves(
    make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, services = ready(make_client, engine_restart_backoff=1.0)
    assert chat(client, "org/b").status_code == 200
    monkeypatch.setenv("FAKE_ENGINE_FAIL_ONLY", "org/b")
    monkeypatch.setenv("FAKE_ENGINE_FAIL", "the GPU fell off the bus")
    os.kill(pid_of(services, "org/b") or 0, signal.SIGKILL)
    eventually(lambda: ps(client)["org/b"]["state"] == "restarting")
    assert chat(client, "org/a").status_code == 200, "the other model keeps serving"
    monkeypatch.delenv("FAKE_ENGINE_FAIL")
    loaded = client.post("/api/load-model", params={"model_id": "org/b"})
    assert loaded.status_code == 202, "a load during the backoff is accepted"
    eventually(lambda: ps(client)["org/b"]["state"] == "ready")
    assert chat(client, "org/b").status_code == 200


def test_a_model_that_fails_to_load_answers_with_its_log_and_leaves_others_alone(
    make_client: MakeClient, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    client, services = ready(make_client)
    a_pid = pid_of(services, "org/a")
    monkeypatch.setenv("FAKE_ENGINE_FAIL_ONLY", "org/b")
    monkeypatch.setenv("FAKE_ENGINE_FAIL_LOG", fail_log(tmp_path / "noarch.log"))
    failed = chat(client, "org/b")
    assert failed.status_code == 502, failed.text
    detail = failed.json()["detail"]
    assert "org/b failed to load: TypeError" in detail and "config.architectures[0]" in detail
    assert ps(client)["org/b"]["state"] == "failed"
    assert chat(client, "org/a").status_code == 200 and pid_of(services, "org/a") == a_pid


def test_a_switch_to_a_model_loaded_on_demand_is_immediate(make_client: MakeClient) -> None:
    client, services = ready(make_client)
    assert chat(client, "org/b").status_code == 200
    b_pid = pid_of(services, "org/b")
    switched = client.post("/api/switch-model", params={"model_id": "org/b"})
    assert switched.status_code == 200, switched.text
    status = client.get("/api/model-loading-status").json()
    assert status["current_model"] == status["serving_model"] == "org/b"
    assert pid_of(services, "org/b") == b_pid
    eventually(lambda: "org/a" not in ps(client))  # the old default stops, as switches always did
