"""Bad input against the real `talktuah serve` process: 4xx with a message, and the server
goes on serving (issue 15, "Bad input never answers 500").

The in-process tests (tests/api/test_bad_input.py) cover each case; this one proves the
same over real HTTP through uvicorn, where a RecursionError used to reach the request
middleware's 500, with the stand-in engine serving so bodies are really forwarded.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from ..support.constants import API_KEY
from ..support.engine import CHAT, FAKE_ENGINE, MODEL_FILES
from ..support.server import TalkTuahProcess
from ..support.tiny_model import install_in_cache


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TalkTuahProcess]:
    home = tmp_path_factory.mktemp("bad-input") / "home"
    install_in_cache(home / "models" / "hub", "org/a", MODEL_FILES)
    env = {"DEFAULT_MODEL": "org/a", "TALKTUAH_ENGINE_EXECUTABLE": str(FAKE_ENGINE)}
    proc = TalkTuahProcess(home, api_key=API_KEY, env=env).start()
    proc.wait_engine()
    yield proc
    proc.stop()


def test_hostile_bodies_are_4xx_and_the_server_keeps_serving(server: TalkTuahProcess) -> None:
    """100,000 nested brackets, NaN and 1e309 on the proxy; NaN and a 4,000-digit number in
    key creation; NUL in a revision: each a 4xx with a message, none logged as a crash."""
    json_headers = {"Content-Type": "application/json"}
    cases: list[tuple[str, str, dict[str, str] | None, bytes | None, int]] = [
        ("POST", "/v1/chat/completions", None, b"[" * 100_000, 400),
        ("POST", "/v1/chat/completions", None,
         b'{"messages":' + b"[" * 50_000 + b"]" * 50_000 + b"}", 400),
        ("POST", "/api/chat", None, b"{" * 100_000, 400),
        ("POST", "/v1/embeddings", None, b'{"input": "x", "dimensions": NaN}', 400),
        ("POST", "/v1/chat/completions", None,
         b'{"messages":[{"role":"user","content":"hi"}],"temperature":1e309}', 400),
        ("POST", "/api/keys", None, b'{"name":"n","scopes":["infer"],"expires_in_days":NaN}', 422),
        ("POST", "/api/keys", None,
         b'{"name":"n","scopes":["infer"],"max_streams":' + b"9" * 4000 + b"}", 422),
        ("POST", "/api/download-model",
         {"model_id": "org/b", "auto": "true", "revision": "main\x00"}, None, 422),
    ]  # fmt: skip
    with server.client() as client:
        for method, path, params, content, expected in cases:
            response = client.request(
                method, path, params=params, content=content, headers=json_headers
            )
            assert response.status_code == expected, (path, response.text)
            body = response.json()
            assert body["detail"] and body["request_id"], body
            if path.startswith("/v1/"):
                assert body["error"]["code"] == expected
        chat = client.post("/v1/chat/completions", json=CHAT)
        assert chat.status_code == 200, chat.text
    assert server.proc is not None and server.proc.poll() is None
    log = server.log()
    assert "unhandled error" not in log and "RecursionError" not in log, log[-3000:]


def test_a_stream_still_works_after_them(server: TalkTuahProcess) -> None:
    """The event loop and the engine connection pool are intact: a streamed chat ends."""
    body = CHAT | {"stream": True, "max_tokens": 2}
    headers = {"Authorization": f"Bearer {API_KEY}"}
    with httpx.stream(
        "POST", f"{server.url}/v1/chat/completions", json=body, headers=headers, timeout=30
    ) as response:
        assert response.status_code == 200
        lines = [line for line in response.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
