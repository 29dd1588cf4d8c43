"""/v1/messages and /v1/responses streams through the real server and a real TCP client.

Why: an agent that gives up on an answer must not leave the engine generating for nobody
(the engine serves one request at a time), and the per-key stream cap must hold for these
streams as for chat. The stand-in engine runs as `vllm serve` (it has both APIs) and
records when its client went away.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ..support.constants import API_KEY
from ..support.engine import FAKE_ENGINE, MODEL_FILES
from ..support.eventually import eventually
from ..support.server import TalkTuahProcess
from ..support.tiny_model import install_in_cache

LONG = {
    "/v1/messages": {
        "model": "org/a",
        "max_tokens": 400,
        "messages": [{"role": "user", "content": "hi"}],
    },
    "/v1/responses": {"model": "org/a", "max_output_tokens": 400, "input": "hi"},
}  # fmt: skip  ~20 s of events each


@pytest.fixture
def server(home: Path, tmp_path: Path) -> Iterator[tuple[TalkTuahProcess, Path]]:
    install_in_cache(home / "models" / "hub", "org/a", MODEL_FILES)
    events = tmp_path / "engine-events.txt"
    env = {
        "DEFAULT_MODEL": "org/a",
        "TALKTUAH_ENGINE": "vllm",
        "TALKTUAH_ENGINE_EXECUTABLE": str(FAKE_ENGINE),
        "FAKE_ENGINE_EVENTS": str(events),
    }
    proc = TalkTuahProcess(home, api_key=API_KEY, env=env)
    proc.start()
    proc.wait_engine()
    yield proc, events
    proc.stop()


def read(events: Path) -> str:
    return events.read_text() if events.exists() else ""


@pytest.mark.parametrize("path", ["/v1/messages", "/v1/responses"])
def test_a_client_that_leaves_closes_the_upstream_stream(
    server: tuple[TalkTuahProcess, Path], path: str
) -> None:
    proc, events = server
    headers = {"x-api-key": API_KEY}
    body = LONG[path] | {"stream": True}
    with httpx.stream("POST", f"{proc.url}{path}", json=body, headers=headers) as response:
        assert response.status_code == 200
        lines = response.iter_lines()
        first = [next(lines) for _ in range(4)]
    assert first[0].startswith("event: ") and first[1].startswith("data: ")
    eventually(lambda: "client went away" in read(events), timeout=10, interval=0.1,
               what="the engine stopping (it kept streaming to nobody)")  # fmt: skip
    assert "stream finished" not in read(events)


def test_the_stream_cap_counts_agent_streams(server: tuple[TalkTuahProcess, Path]) -> None:
    proc, _events = server
    with proc.client() as admin:
        created = admin.post(
            "/api/keys", json={"name": "agent", "scopes": ["infer"], "max_streams": 1}
        ).json()
    headers = {"x-api-key": created["key"]}
    body = LONG["/v1/messages"] | {"stream": True}
    with httpx.stream("POST", f"{proc.url}/v1/messages", json=body, headers=headers) as first:
        lines = first.iter_lines()  # kept: a dropped iterator closes the response
        next(lines)
        second = httpx.post(
            f"{proc.url}/v1/responses", json=LONG["/v1/responses"] | {"stream": True},
            headers=headers, timeout=30,
        )  # fmt: skip
        assert second.status_code == 429 and second.headers["Retry-After"] == "1"
        assert "cap is 1" in second.json()["error"]["message"]
    # Its slot comes back once the client has left (the engine notices on its next write).
    again = eventually(
        lambda: httpx.post(
            f"{proc.url}/v1/messages", json=body | {"max_tokens": 2}, headers=headers, timeout=30
        ),
        lambda answer: answer.status_code != 429, timeout=10, interval=0.1,
        what="the stream slot coming back",
    )  # fmt: skip
    assert again.status_code == 200, again.text
    assert again.text.endswith('event: message_stop\ndata: {"type":"message_stop"}\n\n')
