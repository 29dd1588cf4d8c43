"""Proxy behaviour that needs a real server process and a real TCP client."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ..support.constants import API_KEY
from ..support.engine import FAKE_ENGINE, MODEL_FILES
from ..support.eventually import eventually
from ..support.server import TalkTuahProcess
from ..support.tiny_model import install_in_cache


@pytest.fixture
def server(home: Path, tmp_path: Path) -> Iterator[tuple[TalkTuahProcess, Path]]:
    for repo_id in ("org/a", "org/b"):
        install_in_cache(home / "models" / "hub", repo_id, MODEL_FILES)
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
    proc.wait_engine()
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
    eventually(
        lambda: "client went away" in (events.read_text() if events.exists() else ""),
        timeout=10, interval=0.1, what="the engine stopping (it kept streaming to nobody)",
    )  # fmt: skip
    assert "stream finished" not in events.read_text()
    # The stream it left counts no more: a switch finds the engine idle and kills it at once.
    with proc.client() as client:
        assert client.post("/api/switch-model", params={"model_id": "org/b"}).status_code == 202
    proc.wait_engine("org/b")
    assert "sigterm" not in events.read_text()


def test_the_concurrent_stream_cap_holds_under_parallel_chats(
    server: tuple[TalkTuahProcess, Path],
) -> None:
    proc, _events = server
    proc.wait_engine()
    with proc.client() as admin:
        created = admin.post(
            "/api/keys", json={"name": "chatty", "scopes": ["infer"], "max_streams": 2}
        ).json()
    headers = {"Authorization": f"Bearer {created['key']}"}
    body = {
        "model": "org/a",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
        "max_tokens": 40,
    }  # fmt: skip  ~2 s each
    url = f"{proc.url}/v1/chat/completions"
    started = threading.Barrier(3)
    results: list[int] = []

    def chat() -> None:
        with httpx.stream("POST", url, json=body, headers=headers, timeout=30) as response:
            lines = response.iter_lines()
            next(lines)
            started.wait(10)
            results.append(sum(1 for line in lines if line.startswith("data:")))

    threads = [threading.Thread(target=chat) for _ in range(2)]
    for thread in threads:
        thread.start()
    started.wait(10)  # both streams are open now
    third = httpx.post(url, json=body, headers=headers, timeout=30)
    assert third.status_code == 429, third.text
    assert "cap is 2" in third.json()["detail"] and third.headers["Retry-After"] == "1"
    for thread in threads:
        thread.join(30)
    assert len(results) == 2 and all(count >= 40 for count in results)
    after = httpx.post(url, json=body | {"max_tokens": 2}, headers=headers, timeout=30)
    assert after.status_code == 200, "finished streams give their slots back"
