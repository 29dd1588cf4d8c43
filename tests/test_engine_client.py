"""engine_client: httpx's API on aiohttp, failing with the httpx exception that fits.

Each failure is made for real by a loopback server that misbehaves on cue; what matters to
the proxy is timeout (504) vs anything else (502, or 503 during a switch).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import httpx
import pytest

import talktuah.engine_client
from talktuah.engine_client import engine_client

from .support.server import free_port

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"


async def _request(reader: asyncio.StreamReader) -> None:
    await reader.readuntil(b"\r\n\r\n")


async def _with_server(handler: Handler, use: Callable[[httpx.AsyncClient, str], Awaitable[None]],
                       read_timeout: float = 5.0) -> None:  # fmt: skip
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = engine_client(httpx.Timeout(read_timeout, connect=2.0))
    try:
        await use(client, f"http://127.0.0.1:{port}/v1/chat/completions")
    finally:
        await client.aclose()
        server.close()
        await server.wait_closed()


def test_a_refused_connection_is_a_connect_error_not_a_timeout() -> None:
    async def main() -> None:
        client = engine_client(httpx.Timeout(5.0, connect=2.0))
        try:
            with pytest.raises(httpx.ConnectError) as caught:
                await client.post(f"http://127.0.0.1:{free_port()}/v1/models")
        finally:
            await client.aclose()
        assert not isinstance(caught.value, httpx.TimeoutException)

    asyncio.run(main())


def test_a_server_that_hangs_up_without_answering_is_a_protocol_error() -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _request(reader)
        writer.close()

    async def use(client: httpx.AsyncClient, url: str) -> None:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.post(url, json={})

    asyncio.run(_with_server(hang_up, use))


def test_an_answer_that_breaks_off_is_a_read_error() -> None:
    async def break_off(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _request(reader)
        writer.write(HEAD + b"8\r\ndata: 1\n\r\n")
        await writer.drain()
        writer.close()

    async def use(client: httpx.AsyncClient, url: str) -> None:
        async with client.stream("POST", url, json={}) as response:
            assert response.status_code == 200
            chunks: list[bytes] = []
            with pytest.raises(httpx.ReadError):
                async for chunk in response.aiter_bytes():
                    chunks.append(chunk)
        assert b"".join(chunks) == b"data: 1\n"

    asyncio.run(_with_server(break_off, use))


def test_an_engine_that_goes_silent_is_a_read_timeout() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _request(reader)
        await asyncio.sleep(3)
        writer.close()

    async def use(client: httpx.AsyncClient, url: str) -> None:
        with pytest.raises(httpx.ReadTimeout):
            await client.post(url, json={})

    asyncio.run(_with_server(silent, use, read_timeout=0.3))


def test_events_stream_through_and_the_connection_is_reused() -> None:
    peers: list[object] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peers.append(writer.get_extra_info("peername"))
        for _ in range(2):
            await _request(reader)
            writer.write(HEAD + b"8\r\ndata: 1\n\r\n" + b"8\r\ndata: 2\n\r\n" + b"0\r\n\r\n")
            await writer.drain()
        writer.close()

    async def use(client: httpx.AsyncClient, url: str) -> None:
        for _ in range(2):
            async with client.stream("POST", url, json={"stream": True}) as response:
                body = b"".join([chunk async for chunk in response.aiter_bytes()])
            assert body == b"data: 1\ndata: 2\n"
        assert len(peers) == 1, "both requests went over one kept-alive connection"

    asyncio.run(_with_server(serve, use))


def test_an_idle_connection_is_dropped_before_the_engine_would_drop_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """uvicorn (the engines' server) closes idle connections after 5 s; the client must let
    go first, or a request can go out on a connection that is being closed under it."""
    monkeypatch.setattr(talktuah.engine_client, "KEEPALIVE_SECONDS", 0.2)
    peers: list[object] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peers.append(writer.get_extra_info("peername"))
        while True:
            try:
                await _request(reader)
            except asyncio.IncompleteReadError:
                break
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
            await writer.drain()
        writer.close()

    async def use(client: httpx.AsyncClient, url: str) -> None:
        await client.post(url, json={})
        await client.post(url, json={})
        assert len(peers) == 1
        await asyncio.sleep(0.4)
        await client.post(url, json={})
        assert len(peers) == 2, "the idle connection outlived KEEPALIVE_SECONDS"

    asyncio.run(_with_server(serve, use))


def test_events_that_arrived_together_are_read_as_one_chunk_and_none_is_held() -> None:
    """The proxy writes each chunk it reads: what piled up while it was busy goes out in
    one write, and a lone event is never held back waiting for company."""
    later = asyncio.Event()

    async def burst_then_one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _request(reader)
        writer.write(HEAD)
        for index in range(4):
            writer.write(b"8\r\ndata: %d\n\r\n" % index)
            await writer.drain()
        await later.wait()
        writer.write(b"8\r\ndata: 4\n\r\n0\r\n\r\n")
        await writer.drain()
        writer.close()

    async def use(client: httpx.AsyncClient, url: str) -> None:
        async with client.stream("POST", url, json={}) as response:
            chunks = response.aiter_bytes()
            await asyncio.sleep(0.2)  # the proxy is busy; the burst piles up meanwhile
            assert await anext(chunks) == b"data: 0\ndata: 1\ndata: 2\ndata: 3\n"
            later.set()
            assert await asyncio.wait_for(anext(chunks), 2) == b"data: 4\n"

    asyncio.run(_with_server(burst_then_one, use))


def test_a_client_that_stops_reading_stops_the_engine_soon() -> None:
    """Backpressure: the read-ahead is bounded, so an engine streaming to a stalled client
    is made to wait instead of filling TalkTuah's memory."""
    written = 0
    piece = b"x" * 65536
    chunk = b"%x\r\n%s\r\n" % (len(piece), piece)

    async def firehose(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal written
        await _request(reader)
        writer.write(HEAD)
        try:
            while True:
                writer.write(chunk)
                await writer.drain()
                written += len(piece)
        except (ConnectionError, asyncio.CancelledError):
            writer.close()

    async def use(client: httpx.AsyncClient, url: str) -> None:
        async with client.stream("POST", url, json={}) as response:
            chunks = response.aiter_bytes()
            await anext(chunks)
            await asyncio.sleep(1.0)  # the client stalls; loopback moves GB/s meanwhile
            assert 0 < written < 32 * 2**20, f"{written / 2**20:.0f} MiB read ahead"

    asyncio.run(_with_server(firehose, use))
