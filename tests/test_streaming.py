"""EngineStream: the proxy's streamed answer, driven through its ASGI interface."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

import pytest

from talktuah.streaming import EngineStream


class Peer:
    """The server side of one request: what was sent, and a disconnect on cue."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.gone = asyncio.Event()

    async def receive(self) -> dict[str, Any]:
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.sent[1:])


class Engine:
    """An engine answer as the proxy's generator sees it, recording how it ended."""

    def __init__(self, chunks: int, pause: float = 0.0) -> None:
        self.chunks, self.pause = chunks, pause
        self.closed = False
        self.responses_closed = 0

    async def stream(self) -> AsyncGenerator[bytes, None]:
        try:
            for index in range(self.chunks):
                yield b"data: %d\n\n" % index
                await asyncio.sleep(self.pause)
        finally:
            self.closed = True

    async def close_response(self) -> None:
        self.responses_closed += 1


def _response(engine: Engine) -> EngineStream:
    return EngineStream(
        engine.stream(),
        headers={"Cache-Control": "no-cache"},
        media_type="text/event-stream",
        on_close=engine.close_response,
    )


def test_a_whole_stream_is_sent_then_everything_is_closed() -> None:
    async def scenario() -> tuple[Peer, Engine]:
        peer, engine = Peer(), Engine(chunks=3)
        await _response(engine)({"type": "http"}, peer.receive, peer.send)
        await asyncio.sleep(0)
        return peer, engine

    peer, engine = asyncio.run(scenario())
    assert peer.sent[0]["type"] == "http.response.start" and peer.sent[0]["status"] == 200
    assert (b"content-type", b"text/event-stream; charset=utf-8") in peer.sent[0]["headers"]
    assert peer.body == b"data: 0\n\ndata: 1\n\ndata: 2\n\n"
    assert peer.sent[-1] == {"type": "http.response.body", "body": b"", "more_body": False}
    assert engine.closed and engine.responses_closed == 1


def test_a_client_that_leaves_stops_the_stream_quietly() -> None:
    async def scenario() -> tuple[Peer, Engine, bool]:
        peer, engine = Peer(), Engine(chunks=10_000, pause=0.01)
        request = asyncio.create_task(_response(engine)({"type": "http"}, peer.receive, peer.send))
        await asyncio.sleep(0.05)
        peer.gone.set()
        await asyncio.wait_for(request, 2)  # returns normally: nothing to report to anyone
        return peer, engine, request.cancelling() == 0

    peer, engine, clean = asyncio.run(scenario())
    assert 0 < len(peer.sent) < 100
    assert peer.sent[-1].get("more_body") is True  # never finished
    assert engine.closed and engine.responses_closed == 1
    assert clean  # our own cancel was taken back: the task is not left "cancelling"


def test_a_server_shutdown_still_cancels_the_request() -> None:
    """Only the client leaving is swallowed; any other cancellation goes on up."""

    async def scenario() -> Engine:
        peer, engine = Peer(), Engine(chunks=10_000, pause=0.01)
        request = asyncio.create_task(_response(engine)({"type": "http"}, peer.receive, peer.send))
        await asyncio.sleep(0.05)
        request.cancel()
        with pytest.raises(asyncio.CancelledError):
            await request
        return engine

    engine = asyncio.run(scenario())
    assert engine.closed and engine.responses_closed == 1
