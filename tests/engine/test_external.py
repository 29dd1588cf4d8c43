"""The external driver: an OpenAI-compatible server TalkTuah proxies to but does not run.

The upstream here is the stand-in engine started by the test, as a user would start their
own vLLM or llama.cpp server elsewhere.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest
from fastapi.testclient import TestClient

from ..support.engine import CHAT, FAKE_ENGINE, MakeClient, wait_status
from ..support.eventually import eventually
from ..support.server import free_port


def start_upstream(port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, str(FAKE_ENGINE), "serve", "org/a", "--port", str(port)]
    )
    eventually(
        lambda: httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200,
        interval=0.1, ignoring=(httpx.TransportError,), what="the upstream coming up",
    )  # fmt: skip
    return proc


@pytest.fixture
def upstream() -> Iterator[tuple[int, list[subprocess.Popen[bytes]]]]:
    port = free_port()
    procs = [start_upstream(port)]
    yield port, procs
    for proc in procs:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)


def test_external_engine_is_proxied_watched_and_never_switched(
    make_client: MakeClient, upstream: tuple[int, list[subprocess.Popen[bytes]]]
) -> None:
    port, procs = upstream
    client: TestClient = make_client(engine="external", engine_url=f"http://127.0.0.1:{port}/v1")
    ready = wait_status(client, lambda s: s["engine_state"] == "ready")
    assert ready["engine"] == "external" and ready["serving_model"] == "org/a"
    answer = client.post("/v1/chat/completions", json=CHAT)
    assert answer.status_code == 200 and answer.json()["model"] == "org/a"
    refused = client.post("/api/switch-model", params={"model_id": "org/b"})
    assert refused.status_code == 409 and "run outside TalkTuah" in refused.json()["detail"]

    procs[0].send_signal(signal.SIGKILL)
    procs[0].wait(10)
    down = wait_status(client, lambda s: s["engine_state"] == "failed")
    assert "is down" in down["message"]
    assert client.get("/api/healthz").json()["status"] == "degraded"
    procs.append(start_upstream(port))
    wait_status(client, lambda s: s["engine_state"] == "ready")
    assert client.post("/v1/chat/completions", json=CHAT).status_code == 200
