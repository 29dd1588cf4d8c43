"""The real `talktuah serve` process, driven the way the seed's users drive it: with curl."""

from __future__ import annotations

import json
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from talktuah.services import Services

from ..support.constants import API_KEY
from ..support.repos import PutModel
from ..support.server import TalkTuahProcess


@pytest.fixture
def server(home: Path) -> Iterator[TalkTuahProcess]:
    proc = TalkTuahProcess(home, api_key=API_KEY)
    yield proc
    proc.stop()


def curl(*args: str) -> tuple[int, dict[str, object]]:
    """Run curl as the seed documents it and return (HTTP status, JSON body)."""
    out = subprocess.run(
        ["curl", "-s", "-w", "\n%{http_code}", *args],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    body, _, code = out.stdout.rpartition("\n")
    return int(code), json.loads(body)


def test_seed_curl_walk(server: TalkTuahProcess, put_model: PutModel, services: Services) -> None:
    put_model("org/current", seed=1)
    put_model("org/old-model", seed=2)
    services.state.active_model = "org/current"  # as a switch would have left it
    server.start()
    auth = f"Authorization: Bearer {API_KEY}"
    base = server.url

    code, manual = curl(
        "-X", "POST", f"{base}/api/download-model?model_id=google/gemma-2-2b-it&auto=false",
        "-H", auth,
    )  # fmt: skip
    assert code == 200 and manual["status"] == "manual"
    assert manual["model_id"] == "google/gemma-2-2b-it"
    assert "talktuah pull google/gemma-2-2b-it" in json.dumps(manual["instructions"])

    code, status = curl(f"{base}/api/model-status", "-H", auth)
    assert code == 200
    assert status["downloaded_models"] == ["org/current", "org/old-model"]
    assert status["current_model"] == "org/current" and status["models_dir_exists"] is True

    code, refused = curl(
        "-X", "DELETE", f"{base}/api/delete-model?model_id=org/current&force=false", "-H", auth
    )  # fmt: skip
    assert code == 400 and "force=true" in str(refused["detail"])

    code, deleted = curl(
        "-X", "DELETE", f"{base}/api/delete-model?model_id=org/old-model&force=false", "-H", auth
    )  # fmt: skip
    assert code == 200 and deleted["status"] == "deleted"
    assert deleted["message"].startswith("Successfully deleted org/old-model")  # type: ignore[union-attr]

    code, missing = curl(
        "-X", "DELETE", f"{base}/api/delete-model?model_id=org/old-model", "-H", auth
    )  # fmt: skip
    assert code == 404

    code, hostile = curl("-X", "DELETE", f"{base}/api/delete-model?model_id=../../etc", "-H", auth)
    assert code == 422 and "'..'" in str(hostile["detail"])

    code, status = curl(f"{base}/api/model-status", "-H", auth)
    assert status["downloaded_models"] == ["org/current"]

    code, unauth = curl(f"{base}/api/model-status")
    assert code == 401 and "Bearer" in str(unauth["detail"])
    code, root = curl(f"{base}/")
    assert code == 200 and root["endpoints"]["delete_model"] == "/api/delete-model"  # type: ignore[index]


def test_generated_key_is_printed_once_stored_0600_and_reused(home: Path) -> None:
    first = TalkTuahProcess(home, api_key=None)
    first.start()
    try:
        key_file = home / "api_key"
        key = key_file.read_text().strip()
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        assert first.log().count(key) == 1
        with first.client(key) as client:
            assert client.get("/api/model-status").status_code == 200
        with first.client("not-the-key-0123456789") as client:
            assert client.get("/api/model-status").status_code == 401
    finally:
        first.stop()

    second = TalkTuahProcess(home, api_key=None, port=first.port)
    second.start()
    try:
        assert key_file.read_text().strip() == key
        assert second.log().count(key) == 1, "the key must not be printed again"
        assert "Using the API key stored in" in second.log()
        with second.client(key) as client:
            assert client.get("/api/model-status").status_code == 200
    finally:
        second.stop()


@pytest.mark.parametrize("key", ["change-me", "changeme", "secret", "tooshort"])
def test_weak_key_beyond_loopback_is_refused(home: Path, key: str) -> None:
    proc = TalkTuahProcess(home, api_key=key, host="0.0.0.0")
    proc.start(wait=False)
    try:
        assert proc.wait_exit(30) == 2
    finally:
        proc.stop()
    log = proc.log()
    assert "Refusing to listen on 0.0.0.0" in log and "PROXY_API_KEY" in log
    with pytest.raises(httpx.TransportError):
        httpx.get(proc.url + "/", timeout=2)


def test_sigterm_stops_the_server(server: TalkTuahProcess) -> None:
    server.start()
    assert server.proc is not None
    server.proc.terminate()
    # uvicorn shuts down gracefully, then re-raises the signal it caught: exit by SIGTERM.
    assert server.wait_exit(15) in (0, -15)
    assert "Application shutdown complete" in server.log()
