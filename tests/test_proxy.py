"""EngineProxy paths that are hard to reach through a whole server."""

from __future__ import annotations

import asyncio
import json

import pytest

from talktuah.engine.base import EngineState
from talktuah.engine.supervisor import EngineSupervisor
from talktuah.errors import EngineLoadingError, EngineUnavailableError
from talktuah.services import Services

from .support.server import free_port


@pytest.mark.parametrize(
    ("state", "error"),
    [(EngineState.LOADING, EngineLoadingError), (EngineState.READY, EngineUnavailableError)],
)
def test_an_unreachable_engine_is_503_during_a_switch_else_502(
    services: Services,
    state: EngineState,
    error: type[Exception],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Regression (found by bench/soak.py): a request that passed the readiness check just
    before a switch stopped the engine got 502; it is a switch in progress, so 503."""
    driver = services.engine.driver
    driver.port = free_port()  # type: ignore[attr-defined]  # nothing listens there
    monkeypatch.setattr(EngineSupervisor, "state", property(lambda self: state))

    async def send() -> None:
        try:
            await services.proxy._send("POST", "/v1/chat/completions", {"model": "x"})
        finally:
            await services.proxy.close()

    with pytest.raises(error):
        asyncio.run(send())


def test_sse_lines_are_rewritten_without_losing_anything() -> None:
    """The fast path swaps the model id in place; anything unusual goes through JSON."""
    from talktuah.proxy import _rewrite_line

    counted: list[object] = []
    field = b'"model":"org/asked"'

    def rewrite(line: bytes) -> bytes:
        return _rewrite_line(line, field, "org/asked", counted.append)

    plain = rewrite(
        b'data: {"model":"org/a@main","choices":[{"delta":{"content":"say \\"model\\""}}]}'
    )
    assert json.loads(plain[5:]) == {
        "model": "org/asked",
        "choices": [{"delta": {"content": 'say "model"'}}],
    }
    assert plain.endswith(b"\n\n")
    with_usage = rewrite(b'data: {"model":"x","usage":{"completion_tokens":3}}\r')
    assert json.loads(with_usage[5:])["model"] == "org/asked" and counted == [
        {"completion_tokens": 3}
    ]
    nested = rewrite(b'data: {"model":"x","tool":{"model":"keep"}}')
    assert json.loads(nested[5:]) == {"model": "org/asked", "tool": {"model": "keep"}}
    assert rewrite(b"data: [DONE]") == b"data: [DONE]\n\n"
    assert rewrite(b": keep-alive") == b"" and rewrite(b"") == b""
    assert rewrite(b"event: message") == b"event: message\n"
    assert rewrite(b"data: not json") == b"data: not json\n\n"


def test_a_cookie_the_engine_sets_never_reaches_another_callers_request(
    services: Services,
) -> None:
    """One pooled client serves every caller: it must not keep a cookie jar for them."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    seen: list[str | None] = []

    class Engine(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            seen.append(self.headers.get("Cookie"))
            body = b'{"model": "x", "choices": []}'
            self.send_response(200)
            self.send_header("Set-Cookie", "session=alice-only; Path=/")
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Engine)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        services.engine.driver.port = server.server_address[1]  # type: ignore[attr-defined]
        services.settings.engine_host = "localhost"  # a name: cookie jars ignore bare IPs

        async def two_callers() -> None:
            try:
                for _ in range(2):
                    answer = await services.proxy._send("POST", "/v1/chat/completions", {"a": 1})
                    assert answer.headers["set-cookie"].startswith("session=")
            finally:
                await services.proxy.close()

        asyncio.run(two_callers())
    finally:
        server.shutdown()
        server.server_close()
    assert seen == [None, None]
