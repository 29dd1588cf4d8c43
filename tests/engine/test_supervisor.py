"""EngineSupervisor and the proxy against the stand-in engine (tests/engine/fake_engine.py).

Everything here also happens with the real engine (tests/e2e/test_engine_e2e.py); the
stand-in makes the timing deterministic: slow loads, failed starts, late answers.
"""

from __future__ import annotations

import json
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
from ..support.engine import CHAT, MakeClient, fail_log, switch_and_wait, wait_status
from ..support.eventually import eventually


def test_startup_loads_the_active_model(
    make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_ENGINE_START_DELAY", "0.5")
    client = make_client()
    loading = client.get("/api/model-loading-status").json()
    assert loading["status"] == "loading" and loading["loading_model"] == "org/a"
    assert loading["loading"]["phase"] in ("starting engine", "loading weights")
    ready = wait_status(client, lambda s: s["status"] == "ready")
    assert ready["model_loaded"] and ready["serving_model"] == ready["current_model"] == "org/a"
    health = client.get("/api/healthz").json()
    assert health["status"] == "healthy" and health["model_loaded"] is True


def test_requests_wait_for_a_loading_engine_within_the_bound(
    make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_ENGINE_START_DELAY", "1")
    client = make_client(proxy_load_wait=10)
    response = client.post("/v1/chat/completions", json=CHAT)
    assert response.status_code == 200, response.text
    assert response.json()["model"] == "org/a", "the engine's org/a@main is not what we asked"


def test_requests_past_the_bound_get_503_with_retry_after(
    make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_ENGINE_START_DELAY", "3")
    client = make_client(proxy_load_wait=0.3)
    response = client.post("/v1/chat/completions", json=CHAT)
    assert response.status_code == 503
    assert int(response.headers["Retry-After"]) >= 1
    assert "still loading org/a" in response.json()["detail"]
    assert response.json()["error"]["code"] == 503


def test_an_engine_that_will_not_start_is_failed_with_its_log(
    make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_ENGINE_FAIL", "weights do not match the config")
    client = make_client()
    failed = wait_status(client, lambda s: s["status"] == "failed")
    assert failed["failed_model"] == "org/a" and not failed["model_loaded"]
    assert any("weights do not match" in line for line in failed["log_tail"])
    assert "exited while loading" in failed["error"]
    down = client.post("/v1/chat/completions", json=CHAT)
    assert down.status_code == 502 and "No engine is serving" in down.json()["detail"]


def test_restarts_are_bounded(
    make_client: MakeClient, monkeypatch: pytest.MonkeyPatch, home: object
) -> None:
    client = make_client(engine_restart_limit=2)
    wait_status(client, lambda s: s["status"] == "ready")
    services = client.app.state.services  # type: ignore[attr-defined]
    pid = services.engine.driver.process.pid
    monkeypatch.setenv("FAKE_ENGINE_FAIL", "the GPU fell off the bus")  # every restart fails
    os.kill(pid, signal.SIGKILL)
    gave_up = wait_status(client, lambda s: "gave up" in s["message"], 30)
    assert gave_up["status"] == "failed" and gave_up["restarts"] == 2
    assert any("fell off the bus" in line for line in gave_up["log_tail"])


def test_switch_rules(make_client: MakeClient) -> None:
    client = make_client(load_on_demand=False)  # org/a would load beside org/b otherwise
    wait_status(client, lambda s: s["status"] == "ready")
    assert client.post("/api/switch-model", params={"model_id": "org/zzz"}).status_code == 404
    assert client.post("/api/switch-model", params={"model_id": "../x"}).status_code == 422
    assert client.post("/api/switch-model", params={"model_id": "org/b"}).status_code == 202
    assert client.post("/api/switch-model", params={"model_id": "org/a"}).status_code == 409
    again = client.post("/api/switch-model", params={"model_id": "org/b"})
    assert again.status_code == 200 and "already loading" in again.json()["message"]
    ready = wait_status(client, lambda s: s["status"] == "ready" and s["serving_model"] == "org/b")
    assert ready["current_model"] == "org/b"
    wrong = client.post("/v1/chat/completions", json=CHAT)
    assert wrong.status_code == 404, wrong.text
    assert "POST /api/load-model?model_id=org/a" in wrong.json()["detail"]
    assert "TALKTUAH_LOAD_ON_DEMAND is off" in wrong.json()["detail"]


def ready(make_client: MakeClient, **overrides: Any) -> tuple[TestClient, Services]:
    """TalkTuah with the stand-in engine serving org/a, and its services."""
    client = make_client(**overrides)
    wait_status(client, lambda s: s["status"] == "ready")
    return client, client.app.state.services  # type: ignore[attr-defined]


def test_a_switch_kills_an_idle_engine_at_once(
    make_client: MakeClient, engine_events: Path
) -> None:
    client, services = ready(make_client)
    old = services.engine.driver.process.pid
    assert client.post("/v1/chat/completions", json=CHAT).status_code == 200  # in and out
    assert services.engine.traffic.idle
    switch_and_wait(client, "org/b")
    wait_gone(old)  # the old default stops once the new one serves
    events = engine_events.read_text().splitlines()
    assert "sigterm" not in events, "nothing was in flight: no graceful stop to wait for"
    assert not Path(f"/proc/{old}").exists()


def test_a_switch_lets_a_stream_in_flight_finish(
    make_client: MakeClient, engine_events: Path
) -> None:
    client, services = ready(make_client)
    old = pid(services)
    body = CHAT | {"stream": True, "max_tokens": 30}  # the stand-in: 50 ms per token
    with ThreadPoolExecutor(1) as pool:
        streamed = pool.submit(lambda: client.post("/v1/chat/completions", json=body))

        def began() -> bool:
            assert not streamed.done(), "the stream ended before it began"
            return not services.engine.traffic.idle

        eventually(began, timeout=10, interval=0.01, what="the stream beginning")
        switched = client.post("/api/switch-model", params={"model_id": "org/b"})
        assert switched.status_code == 202
        answer = streamed.result(timeout=30)
    assert answer.status_code == 200
    events = [line for line in answer.text.splitlines() if line.startswith("data:")]
    assert len(events) == 30 + 2 and events[-1] == "data: [DONE]", answer.text[-300:]
    wait_status(client, lambda s: s["status"] == "ready" and s["serving_model"] == "org/b")
    wait_gone(old)
    log = engine_events.read_text().splitlines()
    assert log.index("sigterm") < log.index("stream finished") < log.index("exited gracefully")
    assert services.engine.traffic.idle


def test_an_engine_without_kill_when_idle_always_stops_gracefully(
    make_client: MakeClient, engine_events: Path
) -> None:
    client, services = ready(make_client)
    services.engine.driver.kill_when_idle = False  # as vLLM's driver: its exit cleans up
    old = pid(services)
    switch_and_wait(client, "org/b")
    wait_gone(old)
    log = engine_events.read_text().splitlines()
    assert log.index("sigterm") < log.index("exited gracefully")


def test_failed_engine_calls_leave_no_request_counted(
    make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_ENGINE_REPLY_DELAY", "2")
    client, services = ready(make_client, proxy_timeout=0.5)
    assert client.post("/v1/chat/completions", json=CHAT).status_code == 504
    streamed = client.post("/v1/chat/completions", json=CHAT | {"stream": True})
    assert streamed.status_code == 504
    broken = CHAT | {"stream": True, "messages": [{"role": ""}]}  # the engine's plain 500
    assert client.post("/v1/chat/completions", json=broken).status_code == 502
    assert client.post("/v1/chat/completions", json=CHAT | {"model": "org/zz"}).status_code == 404
    assert services.engine.traffic.in_flight == 0


def test_upstream_timeout_is_504(make_client: MakeClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_ENGINE_REPLY_DELAY", "2")
    client = make_client(proxy_timeout=0.5)
    wait_status(client, lambda s: s["status"] == "ready")
    response = client.post("/v1/chat/completions", json=CHAT)
    assert response.status_code == 504 and "TALKTUAH_PROXY_TIMEOUT" in response.json()["detail"]


def test_engine_quirks_are_smoothed(make_client: MakeClient) -> None:
    client = make_client()
    wait_status(client, lambda s: s["status"] == "ready")
    no_role = client.post(
        "/v1/chat/completions", json=CHAT | {"messages": [{"content": "no role"}]}
    )
    assert no_role.status_code == 400 and "needs a string 'role'" in no_role.json()["detail"]
    plain_500 = client.post("/v1/chat/completions", json=CHAT | {"messages": [{"role": ""}]})
    assert plain_500.status_code == 502
    assert (
        "The engine failed on this request (500: Internal Server Error)"
        in plain_500.json()["detail"]
    )
    with client.stream("POST", "/v1/chat/completions", json=CHAT | {"stream": True}) as stream:
        lines = [line for line in stream.iter_lines() if line.startswith("data:")]
    assert lines[-1] == "data: [DONE]", "the stand-in, like the real engine, sends no [DONE]"
    assert {json.loads(line[5:])["model"] for line in lines[:-1]} == {"org/a"}
    no_model = client.post("/v1/chat/completions", json={"messages": CHAT["messages"]})
    assert no_model.status_code == 200 and no_model.json()["model"] == "org/a"
    assert client.get("/v1/models").json()["data"][0]["id"] == "org/a"
    missing = client.post("/v1/embeddings", json={"model": "org/a", "input": "x"})
    assert missing.status_code == 404 and "does not offer" in missing.json()["detail"]


def wait_gone(process: int | None, timeout: float = 20) -> None:
    """Wait until `process` has exited: a switch stops the old default after the new one
    serves, no longer before it loads."""
    if process is not None:
        eventually(lambda: not Path(f"/proc/{process}").exists(), timeout=timeout,
                   what=f"engine {process} exiting")  # fmt: skip


def pid(services: Services) -> int | None:
    return services.engine.driver.process.pid  # type: ignore[attr-defined, no-any-return]


def test_a_switch_to_the_serving_model_does_nothing_unless_forced(make_client: MakeClient) -> None:
    """Issue 16: the n8n example switches on every run; each reloaded the engine (20-30 s of
    503s on a CPU, minutes on a GPU)."""
    client, services = ready(make_client)
    before = pid(services)
    started = time.monotonic()
    same = client.post("/api/switch-model", params={"model_id": "org/a"})
    assert same.status_code == 200 and same.json()["status"] == "ready", same.text
    assert "already serving" in same.json()["message"]
    assert time.monotonic() - started < 1 and pid(services) == before
    assert client.get("/api/model-loading-status").json()["status"] == "ready"
    forced = client.post("/api/switch-model", params={"model_id": "org/a", "force": "true"})
    assert forced.status_code == 202 and forced.json()["status"] == "switching"
    wait_status(client, lambda s: s["status"] == "ready" and s["serving_model"] == "org/a")
    assert pid(services) != before


def test_a_switch_replaces_a_restart_waiting_out_its_backoff(
    make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 16: during the restart backoff (up to ~62 s) a switch got 409 "A switch to None
    is already running"."""
    clock = FakeClock()
    client, services = ready(
        make_client, engine_restart_backoff=1.5, engine_restart_limit=3, clock=clock
    )
    monkeypatch.setenv("FAKE_ENGINE_FAIL", "the GPU fell off the bus")  # restarts fail
    os.kill(pid(services) or 0, signal.SIGKILL)
    # The first restart (after 1.5 s) fails; the second waits 3 s: switch in that wait.
    wait_status(client, lambda s: (s["restart_pending"] or {}).get("attempt") == 1)
    clock.advance(1.5)
    waiting = wait_status(
        client, lambda s: (s["restart_pending"] or {}).get("attempt") == 2, timeout=20
    )
    pending = waiting["restart_pending"]
    assert pending["model"] == "org/a" and pending["limit"] == 3 and pending["seconds_left"] > 1
    assert pending["next_restart_at"].endswith("+00:00")
    assert waiting["engine_state"] == "failed" and waiting["serving_model"] is None
    assert waiting["last_failure"]["kind"] == "restart" and "attempt 2 of 3" in waiting["message"]
    monkeypatch.delenv("FAKE_ENGINE_FAIL")
    switched = client.post("/api/switch-model", params={"model_id": "org/b"})
    assert switched.status_code == 202, switched.text
    done = wait_status(client, lambda s: s["engine_state"] != "loading")
    assert done["status"] == "ready" and done["serving_model"] == "org/b", done
    assert done["restart_pending"] is None and done["last_failure"] is None
    clock.advance(3.5)  # past when the replaced restart was due
    time.sleep(0.5)  # the instance looks at least twice (TALKTUAH_ENGINE_HEALTH_INTERVAL 0.2)
    after = client.get("/api/model-loading-status").json()
    assert after["serving_model"] == "org/b" and after["restarts"] == 0


def test_loading_phases_follow_the_engine(
    make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ "starting engine" until the process answers HTTP, then "loading weights"."""
    monkeypatch.setenv("FAKE_ENGINE_START_DELAY", "0.8")  # not listening yet
    monkeypatch.setenv("FAKE_ENGINE_LOAD_DELAY", "1.2")  # listening, 503, no model listed
    client = make_client()
    phases: list[str] = []

    def note(status: dict[str, Any]) -> bool:
        phase = (status.get("loading") or {}).get("phase")
        if phase and (not phases or phases[-1] != phase):
            phases.append(phase)
        return bool(status["status"] == "ready")

    wait_status(client, note)
    assert phases == ["starting engine", "loading weights"], phases


def test_a_rolled_back_switch_reads_as_serving_the_previous_model(
    make_client: MakeClient, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Issue 16: after a rolled-back switch the status said "failed" everywhere while the
    previous model served; the failure is now a separate notice, with its cause first."""
    monkeypatch.setenv("FAKE_ENGINE_FAIL_ONLY", "org/b")
    monkeypatch.setenv("FAKE_ENGINE_FAIL_LOG", fail_log(tmp_path / "noarch.log"))
    client, services = ready(make_client)
    assert client.post("/api/switch-model", params={"model_id": "org/b"}).status_code == 202
    after = wait_status(client, lambda s: s["engine_state"] == "ready" and s["last_failure"])
    assert after["serving_model"] == after["current_model"] == "org/a" and after["model_loaded"]
    assert after["message"].startswith("org/a still serves"), after["message"]
    failure = after["last_failure"]
    assert failure["model"] == "org/b" and failure["kind"] == "switch"
    assert failure["cause"] == "TypeError: 'NoneType' object is not subscriptable"
    assert "names no `architectures`" in failure["hint"]
    assert any("config.architectures[0]" in line for line in failure["log_tail"])
    # Old clients poll `status` for the switch's outcome: it keeps saying failed.
    assert after["status"] == "failed" and after["failed_model"] == "org/b"
    assert "exited while loading" in after["error"]
    assert client.post("/v1/chat/completions", json=CHAT).status_code == 200

    dismissed = client.post("/api/engine/dismiss-failure")
    assert dismissed.status_code == 200 and dismissed.json()["dismissed"] is True
    clean = client.get("/api/model-loading-status").json()
    assert clean["status"] == "ready" and clean["last_failure"] is None and "error" not in clean
    assert client.post("/api/engine/dismiss-failure").json()["dismissed"] is False


def test_a_failure_about_a_deleted_or_served_model_is_cleared(
    make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_ENGINE_FAIL_ONLY", "org/b")
    monkeypatch.setenv("FAKE_ENGINE_FAIL", "weights do not match the config")
    client, services = ready(make_client)
    client.post("/api/switch-model", params={"model_id": "org/b"})
    failed = wait_status(client, lambda s: s["engine_state"] == "ready" and s["last_failure"])
    assert failed["last_failure"]["cause"] == "ValueError: weights do not match the config"
    # Asking for what serves is a success: old clients see it as the switch's outcome.
    assert client.post("/api/switch-model", params={"model_id": "org/a"}).status_code == 200
    noted = client.get("/api/model-loading-status").json()
    assert noted["status"] == "ready" and noted["last_failure"]["model"] == "org/b"
    deleted = client.delete("/api/delete-model", params={"model_id": "org/b"})
    assert deleted.status_code == 200, deleted.text
    assert client.get("/api/model-loading-status").json()["last_failure"] is None

    monkeypatch.setenv("FAKE_ENGINE_FAIL_ONLY", "org/a")
    client.post("/api/switch-model", params={"model_id": "org/a", "force": "true"})
    down = wait_status(client, lambda s: s["engine_state"] == "failed")
    assert down["last_failure"]["model"] == "org/a" and down["last_failure"]["kind"] == "load"
    monkeypatch.delenv("FAKE_ENGINE_FAIL")
    switched = switch_and_wait(client, "org/a")
    assert switched["last_failure"] is None and "error" not in switched
