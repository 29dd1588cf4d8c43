"""Switching and its status against the real `talktuah serve`, the CLI and the stand-in
engine (issue 16).

Clients such as the n8n example ask for the model on every run: each request reloaded the
engine (20-30 s of 503s on a CPU). A switch that failed and was rolled back made `talktuah
ps` say "failed" while the previous model served, and `talktuah use` printed the engine's
traceback before its cause.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..support.constants import API_KEY
from ..support.engine import FAKE_ENGINE, MODEL_FILES, fail_log
from ..support.hub import Hub
from ..support.server import TalkTuahProcess
from ..support.tiny_model import install_in_cache
from .test_cli import cli

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def server(home: Path, hub: Hub, tmp_path: Path) -> Iterator[TalkTuahProcess]:
    for repo_id in ("org/a", "org/b", "org/noarch"):
        install_in_cache(home / "models" / "hub", repo_id, MODEL_FILES | {"id": repo_id.encode()})
    env = {
        "HF_ENDPOINT": hub.url,
        "DEFAULT_MODEL": "org/a",
        "TALKTUAH_ENGINE": "transformers",  # the stand-in speaks as `transformers serve`
        "TALKTUAH_ENGINE_EXECUTABLE": str(FAKE_ENGINE),
        "TALKTUAH_ENGINE_STOP_TIMEOUT": "3",
        "FAKE_ENGINE_FAIL_ONLY": "org/noarch",
        "FAKE_ENGINE_FAIL_LOG": fail_log(tmp_path / "noarch.log"),
    }
    proc = TalkTuahProcess(home, api_key=API_KEY, env=env)
    proc.start()
    proc.wait_engine("org/a")
    yield proc
    proc.stop()


def engine_pid(server: TalkTuahProcess) -> int:
    return int(json.loads((server.home / "engine" / "engine.pid").read_text())["pid"])


def test_asking_for_the_serving_model_does_not_reload_it(server: TalkTuahProcess) -> None:
    before = engine_pid(server)
    with server.client() as client:
        started = time.monotonic()
        same = client.post("/api/switch-model", params={"model_id": "org/a"})
        assert same.status_code == 200 and same.json()["status"] == "ready", same.text
        assert "already serving" in same.json()["message"]
        pulled = client.post(
            "/api/download-model",
            params={"model_id": "org/a", "auto": "true", "activate": "true"},
        )
        assert pulled.status_code == 200, pulled.text
        assert pulled.json()["message"] == "org/a is already downloaded and serving; nothing to do."
        assert time.monotonic() - started < 2
        assert client.get("/api/model-loading-status").json()["engine_state"] == "ready"
    used = cli(server.url, "use", "org/a")
    assert used.returncode == 0 and "org/a is already serving" in used.stderr, used.stderr
    assert engine_pid(server) == before

    forced = cli(server.url, "use", "org/a", "--force")
    assert forced.returncode == 0 and "org/a is serving." in forced.stderr, forced.stderr
    assert engine_pid(server) != before
    with server.client() as client:  # force=true on the API too
        reloaded = engine_pid(server)
        again = client.post("/api/switch-model", params={"model_id": "org/a", "force": "true"})
        assert again.status_code == 202
    server.wait_engine("org/a")
    assert engine_pid(server) != reloaded

    with server.client() as client:  # a model on disk that does not serve: a real switch
        other = client.post(
            "/api/download-model",
            params={"model_id": "org/b", "auto": "true", "activate": "true"},
        )
        assert other.status_code == 200 and "switching to it" in other.json()["message"]
    server.wait_engine("org/b")


def test_a_rolled_back_switch_reads_as_serving_the_previous_model(
    server: TalkTuahProcess,
) -> None:
    used = cli(server.url, "use", "org/noarch")
    assert used.returncode == 1
    lines = used.stderr.splitlines()
    assert lines[0] == "failed: org/noarch did not load; org/a still serves.", used.stderr
    assert lines[1] == "Cause: TypeError: 'NoneType' object is not subscriptable"
    assert lines[2].startswith("Hint: The config.json of org/noarch names no `architectures`")
    assert "`talktuah use org/noarch --verbose` shows the engine log." in used.stderr
    assert "Traceback" not in used.stderr and "File " not in used.stderr

    with server.client() as client:
        status = client.get("/api/model-loading-status").json()
    assert status["engine_state"] == "ready" and status["serving_model"] == "org/a"
    assert status["model_loaded"] and status["current_model"] == "org/a"
    assert status["last_failure"]["model"] == "org/noarch"
    assert status["status"] == "failed"  # kept for old clients: the switch's outcome

    ps = cli(server.url, "ps")
    assert ps.returncode == 0, ps.stderr
    assert "engine  transformers: ready" in ps.stdout and "serving  org/a" in ps.stdout
    # The pool loads the new model beside the old one: org/a never stopped, it still serves.
    assert "active  org/a" in ps.stdout and "status  ready: org/a still serves" in ps.stdout
    assert "failure  org/noarch did not load" in ps.stdout
    assert "  Cause: TypeError: 'NoneType' object is not subscriptable" in ps.stdout
    assert "config.architectures[0]" not in ps.stdout
    verbose = cli(server.url, "ps", "--verbose")
    assert "config.architectures[0]" in verbose.stdout

    detailed = cli(server.url, "use", "org/noarch", "--verbose")
    assert detailed.returncode == 1 and "config.architectures[0]" in detailed.stderr

    dismissed = cli(server.url, "ps", "--dismiss")
    assert "The last failure was dismissed." in dismissed.stderr
    assert "failure" not in dismissed.stdout and "serving  org/a" in dismissed.stdout
