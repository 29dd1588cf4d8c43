"""The real engine behind the real server: `transformers serve` on tiny generated models.

One engine for the whole module (each is a process of ~0.5 GB): the tests run in order
and each leaves the server serving `org/tiny-a` again. The server runs the single-model
configuration (`TALKTUAH_MAX_LOADED_MODELS=1`, no load on demand): the switch path, as a
user with room for one model has it. Several models at once: tests/e2e/test_pool_e2e.py.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from ..support.constants import API_KEY
from ..support.eventually import eventually
from ..support.hub import Hub
from ..support.server import TalkTuahProcess, engine_record
from ..support.tiny_model import install_in_cache, tiny_chat_model_files

pytestmark = pytest.mark.timeout(120)

ENV = {
    "DEFAULT_MODEL": "org/tiny-a",
    "TALKTUAH_ENGINE_HEALTH_INTERVAL": "0.5",
    "TALKTUAH_ENGINE_RESTART_BACKOFF": "0.5",
    "TALKTUAH_ENGINE_STOP_TIMEOUT": "5",
    "TALKTUAH_PROXY_LOAD_WAIT": "60",
    "TALKTUAH_MAX_LOADED_MODELS": "1",
    "TALKTUAH_LOAD_ON_DEMAND": "0",
}


@pytest.fixture(scope="module")
def models() -> dict[str, dict[str, bytes]]:
    a, b = tiny_chat_model_files(seed=1), tiny_chat_model_files(seed=2)
    config = json.loads(a["config.json"])
    config["hidden_size"] = 65  # not a multiple of the heads: transformers refuses to load it
    broken = dict(a, **{"config.json": json.dumps(config).encode()})
    return {"org/tiny-a": a, "org/tiny-b": b, "org/broken": broken}


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    server = Hub(tmp_path_factory.mktemp("engine-hub"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, models: dict[str, dict[str, bytes]]) -> Path:
    home = tmp_path_factory.mktemp("engine") / "home"
    for repo_id, files in models.items():
        install_in_cache(home / "models" / "hub", repo_id, files)
    return home


@pytest.fixture(scope="module")
def server(home: Path, hub: Hub) -> Iterator[TalkTuahProcess]:
    proc = TalkTuahProcess(home, api_key=API_KEY, env=ENV | {"HF_ENDPOINT": hub.url})
    proc.start()
    try:
        proc.wait_status(lambda s: s["engine_state"] == "ready", 60)
        yield proc
    finally:
        proc.stop()


def engine_pid(home: Path, model_id: str = "org/tiny-a") -> int:
    return int(engine_record(home, model_id)["pid"])


def exited(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (ProcessLookupError, FileNotFoundError):
        return True
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"


def gone(pid: int, timeout: float = 15) -> bool:
    """Whether `pid` exits (or is a zombie) within `timeout` seconds."""
    try:
        eventually(lambda: exited(pid), timeout=timeout, interval=0.1)
    except AssertionError:
        return False
    return True


def sdk(proc: TalkTuahProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{proc.url}/v1", api_key=API_KEY, max_retries=0)


def test_the_engine_leaves_a_cpu_to_talktuah(server: TalkTuahProcess, home: Path) -> None:
    """The real engine process got OMP_NUM_THREADS = usable CPUs - 1 (at least 1)."""
    environ = Path(f"/proc/{engine_pid(home)}/environ").read_bytes().split(b"\0")
    expected = max(1, len(os.sched_getaffinity(0)) - 1)
    assert f"OMP_NUM_THREADS={expected}".encode() in environ


def test_openai_sdk_streams_and_completes(server: TalkTuahProcess) -> None:
    client = sdk(server)
    listed = client.models.list().data
    assert [m.id for m in listed][0] == "org/tiny-a" and listed[0].model_extra["loaded"]
    assert not any(m.model_extra["loaded"] for m in listed[1:])
    arrivals: list[float] = []
    text = ""
    stream = client.chat.completions.create(
        model="org/tiny-a", messages=[{"role": "user", "content": "hello"}],
        max_tokens=24, stream=True,
    )  # fmt: skip
    for chunk in stream:
        arrivals.append(time.monotonic())
        assert chunk.model == "org/tiny-a"
        if chunk.choices and chunk.choices[0].delta.content:
            text += chunk.choices[0].delta.content
    assert len(arrivals) >= 10 and text.strip()
    assert arrivals[-1] - arrivals[0] > 0, "chunks must arrive as generated, not all at once"
    whole = client.chat.completions.create(
        model="org/tiny-a", messages=[{"role": "user", "content": "hello"}], max_tokens=8
    )
    assert whole.model == "org/tiny-a" and whole.choices[0].message.content
    legacy = client.completions.create(model="org/tiny-a", prompt="hello", max_tokens=4)
    assert legacy.model == "org/tiny-a"


def test_streams_end_with_done_and_the_seed_chat_streams_by_default(
    server: TalkTuahProcess,
) -> None:
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
    with server.client() as client:
        with client.stream("POST", "/api/chat", json=body) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            lines = [line for line in response.iter_lines() if line.startswith("data:")]
        assert lines[-1] == "data: [DONE]"
        events = [json.loads(line[5:]) for line in lines[:-1]]
        assert {e["model"] for e in events} == {"org/tiny-a"}
        assert client.get("/api/models").json()["data"][0]["id"] == "org/tiny-a"


def test_the_proxy_speaks_json_errors(server: TalkTuahProcess) -> None:
    client = sdk(server)
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(
            model="org/tiny-b", messages=[{"role": "user", "content": "x"}], max_tokens=2
        )
    assert "is not loaded" in str(missing.value)
    with server.client() as http:
        bad = http.post("/v1/chat/completions", json={"model": "org/tiny-a", "messages": "x"})
        assert bad.status_code == 400 and "messages" in bad.json()["detail"]
        garbage = http.post("/v1/chat/completions", content=b"{not json")
        assert garbage.status_code == 400 and "not valid JSON" in garbage.json()["detail"]
        # transformers serve answers this with a plain-text 500; clients get a 400 that says why
        numeric = http.post(
            "/v1/chat/completions",
            json={"model": "org/tiny-a", "messages": [{"role": "user", "content": 5}]},
        )
        assert numeric.status_code == 400
        assert "messages[0].content must be a string" in numeric.json()["detail"]


def test_switch_between_models(server: TalkTuahProcess) -> None:
    with server.client() as client:
        assert client.post("/api/switch-model", params={"model_id": "org/nope"}).status_code == 404
        started = client.post("/api/switch-model", params={"model_id": "org/tiny-b"})
        assert started.status_code == 202 and started.json()["status"] == "switching"
        again = client.post("/api/switch-model", params={"model_id": "org/tiny-a"})
        assert again.status_code == 409
        loading = server.status()
        assert loading["status"] == "loading" and loading["loading_model"] == "org/tiny-b"
        assert loading["current_model"] == "org/tiny-a", "active only once it serves"
    ready = server.wait_status(lambda s: s["status"] == "ready")
    assert ready["current_model"] == ready["serving_model"] == "org/tiny-b"
    logs = [p.read_text() for p in (server.home / "engine").glob("engine*.log")]
    runs = [run for log in logs for run in log.split("\n--- ")]
    previous = next(run for run in reversed(runs) if "serve org/tiny-a" in run)
    assert any("serve org/tiny-b" in run for run in runs)
    # Nothing was in flight: the engine was killed, not left to its 0.4 s graceful exit.
    assert "Shutting down" not in previous and "Started server process" in previous
    answer = sdk(server).chat.completions.create(
        model="org/tiny-b", messages=[{"role": "user", "content": "hello"}], max_tokens=4
    )
    assert answer.model == "org/tiny-b"
    with server.client() as client:
        assert client.get("/api/model-status").json()["current_model"] == "org/tiny-b"
        assert (
            client.post("/api/switch-model", params={"model_id": "org/tiny-a"}).status_code == 202
        )
    server.wait_status(lambda s: s["status"] == "ready" and s["serving_model"] == "org/tiny-a")


def test_a_request_during_loading_is_answered_once_ready(server: TalkTuahProcess) -> None:
    with server.client() as client:
        assert (
            client.post("/api/switch-model", params={"model_id": "org/tiny-b"}).status_code == 202
        )
        assert server.status()["status"] == "loading"
        started = time.monotonic()
        answer = client.post(
            "/v1/chat/completions",
            json={"model": "org/tiny-b", "messages": [{"role": "user", "content": "hi"}],
                  "max_tokens": 3},
        )  # fmt: skip
        assert answer.status_code == 200, answer.text
        assert answer.json()["model"] == "org/tiny-b" and time.monotonic() - started > 0.5
        assert (
            client.post("/api/switch-model", params={"model_id": "org/tiny-a"}).status_code == 202
        )
    server.wait_status(lambda s: s["status"] == "ready" and s["serving_model"] == "org/tiny-a")


def test_a_model_that_fails_to_load_is_reported_and_the_previous_restored(
    server: TalkTuahProcess,
) -> None:
    with server.client() as client:
        assert (
            client.post("/api/switch-model", params={"model_id": "org/broken"}).status_code == 202
        )
    failed = server.wait_status(lambda s: s["status"] == "failed", 90)
    assert failed["failed_model"] == "org/broken"
    assert failed["engine_state"] == "ready" and failed["serving_model"] == "org/tiny-a"
    assert failed["current_model"] == "org/tiny-a"
    assert any("hidden size" in line for line in failed["log_tail"]), failed["log_tail"]
    assert "org/tiny-a was restored" in failed["message"]
    answer = sdk(server).chat.completions.create(
        model="org/tiny-a", messages=[{"role": "user", "content": "hello"}], max_tokens=3
    )
    assert answer.model == "org/tiny-a"


def test_a_killed_engine_is_reported_and_restarted(server: TalkTuahProcess, home: Path) -> None:
    pid = engine_pid(home)
    os.kill(pid, signal.SIGKILL)
    failed = server.wait_status(lambda s: s["engine_state"] in ("failed", "loading"), 20)
    assert "engine process" in (failed["error"] or "") or failed["engine_state"] == "loading"
    ready = server.wait_status(lambda s: s["engine_state"] == "ready", 60)
    assert ready["restarts"] >= 1 and engine_pid(home) != pid
    with server.client() as client:
        health = client.get("/api/healthz").json()
    assert health["status"] == "healthy" and health["upstream_healthy"] is True


def test_download_with_activate_loads_the_model(
    server: TalkTuahProcess, hub: Hub, models: dict[str, dict[str, bytes]]
) -> None:
    hub.add_repo("org/tiny-c", tiny_chat_model_files(seed=3))
    with server.client() as client:
        job = client.post(
            "/api/download-model",
            params={"model_id": "org/tiny-c", "auto": "true", "activate": "true"},
        ).json()
        assert job["status"] in ("queued", "downloading"), job
    server.wait_status(lambda s: s["serving_model"] == "org/tiny-c" and s["status"] == "ready")
    answer = sdk(server).chat.completions.create(
        model="org/tiny-c", messages=[{"role": "user", "content": "hello"}], max_tokens=3
    )
    assert answer.model == "org/tiny-c"
    with server.client() as client:
        assert (
            client.post("/api/switch-model", params={"model_id": "org/tiny-a"}).status_code == 202
        )
    server.wait_status(lambda s: s["status"] == "ready" and s["serving_model"] == "org/tiny-a")


def test_deleting_the_served_model_stops_the_engine_then_404(
    server: TalkTuahProcess, home: Path, models: dict[str, dict[str, bytes]]
) -> None:
    pid = engine_pid(home)
    with server.client() as client:
        deleted = client.delete(
            "/api/delete-model", params={"model_id": "org/tiny-a", "force": "true"}
        )
        assert deleted.status_code == 200
        assert server.status()["engine_state"] == "stopped"
        assert gone(pid)
        down = client.post(
            "/v1/chat/completions",
            json={"model": "org/tiny-a", "messages": [{"role": "user", "content": "x"}]},
        )
        # Gone from the disk: "not downloaded", with the command that brings it back.
        assert down.status_code == 404 and "talktuah pull org/tiny-a" in down.json()["detail"]
        assert client.get("/api/healthz").json()["status"] == "degraded"
    install_in_cache(home / "models" / "hub", "org/tiny-a", models["org/tiny-a"])
    with server.client() as client:
        assert (
            client.post("/api/switch-model", params={"model_id": "org/tiny-a"}).status_code == 202
        )
    server.wait_status(lambda s: s["status"] == "ready" and s["serving_model"] == "org/tiny-a")


def test_no_orphans_after_sigterm_or_sigkill(server: TalkTuahProcess, home: Path) -> None:
    pid = engine_pid(home)
    server.stop()
    assert gone(pid), "SIGTERM of TalkTuah must take the engine down"

    second = TalkTuahProcess(home, api_key=API_KEY, env=ENV, port=server.port)
    second.start()
    try:
        ready = second.wait_status(lambda s: s["engine_state"] == "ready")
        assert ready["serving_model"] == "org/tiny-a", "serve restarts into the last active model"
        orphan = engine_pid(home)
        second.kill9()
        assert not gone(orphan, timeout=1), "after SIGKILL the engine survives until next start"
    finally:
        second.stop()

    third = TalkTuahProcess(home, api_key=API_KEY, env=ENV, port=server.port)
    third.start()
    try:
        assert gone(orphan), "the next start must clean up the orphaned engine"
        third.wait_status(lambda s: s["engine_state"] == "ready")
        assert engine_pid(home) != orphan
    finally:
        third.stop()
