"""Proxy behaviour that needs a real server process and a real TCP client."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ..conftest import API_KEY
from ..engine.conftest import FAKE_ENGINE, MODEL_FILES
from ..support.server import TalkTuahProcess
from ..support.tiny_model import install_in_cache


@pytest.fixture
def server(home: Path, tmp_path: Path) -> Iterator[tuple[TalkTuahProcess, Path]]:
    install_in_cache(home / "models" / "hub", "org/a", MODEL_FILES)
    events = tmp_path / "engine-events.txt"
    env = {
        "DEFAULT_MODEL": "org/a",
        "TALKTUAH_ENGINE_EXECUTABLE": str(FAKE_ENGINE),
        "FAKE_ENGINE_EVENTS": str(events),
    }
    proc = TalkTuahProcess(home, api_key=API_KEY, env=env)
    proc.start()
    yield proc, events
    proc.stop()


def test_a_client_that_disconnects_cancels_the_upstream_stream(
    server: tuple[TalkTuahProcess, Path],
) -> None:
    """A long generation whose client went away must not keep the (single-request) engine busy."""
    proc, events = server
    deadline = time.monotonic() + 30
    with proc.client() as client:
        while client.get("/api/model-loading-status").json()["status"] != "ready":
            assert time.monotonic() < deadline, proc.log()
            time.sleep(0.1)
    body = {
        "model": "org/a",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
        "max_tokens": 400,
    }  # fmt: skip  ~20 s of chunks
    headers = {"Authorization": f"Bearer {API_KEY}"}
    with httpx.stream("POST", f"{proc.url}/v1/chat/completions", json=body, headers=headers) as r:
        lines = r.iter_lines()
        first = [next(lines) for _ in range(3)]
        assert any(line.startswith("data:") for line in first)
    started = time.monotonic()
    while "client went away" not in (events.read_text() if events.exists() else ""):
        assert time.monotonic() - started < 10, "the engine kept streaming to nobody"
        time.sleep(0.1)
    assert "stream finished" not in events.read_text()
