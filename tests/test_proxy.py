"""EngineProxy paths that are hard to reach through a whole server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest

from talktuah.engine.base import EngineState
from talktuah.errors import EngineLoadingError, EngineUnavailableError
from talktuah.services import Services

from .support.server import free_port


@pytest.mark.parametrize(
    ("state", "error"),
    [(EngineState.LOADING, EngineLoadingError), (EngineState.READY, EngineUnavailableError)],
)
def test_an_unreachable_engine_is_503_during_a_switch_else_502(
    services: Services, state: EngineState, error: type[Exception]
) -> None:
    """Regression (found by bench/soak.py): a request that passed the readiness check just
    before a switch stopped the engine got 502; it is a switch in progress, so 503."""
    driver = services.engine.driver
    driver.port = free_port()  # type: ignore[attr-defined]  # nothing listens there
    services.engine._state = state

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


class Source:
    """An async chunk source fed by hand, recording how far it was read."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes | Exception | None] = asyncio.Queue()
        self.read = 0

    async def chunks(self) -> AsyncIterator[bytes]:
        while (item := await self.queue.get()) is not None:
            if isinstance(item, Exception):
                raise item
            self.read += 1
            yield item


def test_coalesce_merges_what_is_already_here_and_never_waits_for_more() -> None:
    from talktuah.proxy import coalesce

    async def scenario() -> list[bytes]:
        source = Source()
        out = coalesce(source.chunks())
        for chunk in (b"a", b"b", b"c", b"d"):  # a burst: all arrived together
            source.queue.put_nowait(chunk)
        got = [await anext(out)]  # the first goes out alone, at once (time to first byte)
        got.append(await anext(out))  # the rest of the burst, in one piece
        source.queue.put_nowait(b"e")  # a lone token: out at once, not held for company
        got.append(await asyncio.wait_for(anext(out), 1))
        source.queue.put_nowait(None)
        got.extend([chunk async for chunk in out])
        return got

    assert asyncio.run(scenario()) == [b"a", b"bcd", b"e"]


def test_coalesce_passes_the_engine_error_on_after_what_came_before() -> None:
    from talktuah.proxy import coalesce

    async def scenario() -> tuple[list[bytes], BaseException | None]:
        source = Source()
        for item in (b"1", b"2", ConnectionResetError("engine died")):
            source.queue.put_nowait(item)
        got: list[bytes] = []
        try:
            async for chunk in coalesce(source.chunks()):
                got.append(chunk)
        except ConnectionResetError as exc:
            return got, exc
        return got, None

    got, error = asyncio.run(scenario())
    assert got == [b"1", b"2"] and isinstance(error, ConnectionResetError)


def test_coalesce_reads_ahead_only_so_far_and_stops_when_closed() -> None:
    from talktuah.proxy import COALESCE_AHEAD, coalesce

    async def scenario() -> tuple[int, int]:
        source = Source()
        for index in range(COALESCE_AHEAD * 4):
            source.queue.put_nowait(b"%d," % index)
        out = coalesce(source.chunks())
        await anext(out)
        await anext(out)  # the reader is running; now the client stalls
        await asyncio.sleep(0.05)
        ahead = source.read
        await out.aclose()  # the client went away
        await asyncio.sleep(0.01)
        return ahead, source.read

    ahead, after_close = asyncio.run(scenario())
    # Bounded read-ahead (backpressure reaches the engine), and no reading after the close.
    assert ahead <= 2 * COALESCE_AHEAD + 3
    assert after_close == ahead
