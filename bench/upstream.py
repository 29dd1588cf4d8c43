"""A fast OpenAI-compatible upstream for the proxy benchmark: a fixed token stream, no model.

So that the proxy, not the model, is what `bench/proxy.py` measures, this server does almost
nothing: a raw asyncio protocol (uvloop when installed) with HTTP/1.1 keep-alive that answers

- `GET /v1/models` (TalkTuah's external engine uses it as its health check and takes the
  first id as the served model) and `GET /health`;
- `POST /v1/chat/completions` with `stream: true`: N `chat.completion.chunk` SSE events,
  each written on its own (chunked transfer encoding), then `data: [DONE]`; with
  `stream: false`: one `chat.completion` JSON body.

    python bench/upstream.py --port 9000 [--tokens 16] [--token-delay-ms 0]

It prints `ready <port>` on stdout once it listens. The responses are built once at start.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import cast

MODEL = "bench/fast"


def _chunk(data: bytes) -> bytes:
    """One chunk of chunked transfer encoding."""
    return b"%x\r\n%s\r\n" % (len(data), data)


def build_stream(tokens: int) -> tuple[bytes, list[bytes]]:
    """The response head and the chunk-encoded SSE events of one streamed answer."""
    head = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    events = []
    for index in range(tokens):
        event = {
            "id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 0,
            "model": MODEL,
            "choices": [{"index": 0, "delta": {"content": f"tok{index} "}, "finish_reason": None}],
        }  # fmt: skip
        events.append(_chunk(b"data: " + json.dumps(event).encode() + b"\n\n"))
    final = {
        "id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 0, "model": MODEL,
        "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": tokens, "total_tokens": 5 + tokens},
    }  # fmt: skip
    events.append(_chunk(b"data: " + json.dumps(final).encode() + b"\n\n"))
    events.append(_chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n")
    return head, events


def _json_response(status: str, payload: object) -> bytes:
    body = json.dumps(payload).encode()
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


class Upstream(asyncio.Protocol):
    """One connection: parse requests off the buffer, answer them in order."""

    def __init__(self, tokens: int, delay: float) -> None:
        self.head, self.events = build_stream(tokens)
        self.delay = delay
        models = {"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "bench"}]}
        self.models = _json_response("200 OK", models)
        self.health = _json_response("200 OK", {"status": "ok"})
        self.not_found = _json_response("404 Not Found", {"detail": "Not Found"})
        self.completion = _json_response(
            "200 OK",
            {
                "id": "chatcmpl-bench", "object": "chat.completion", "created": 0,
                "model": MODEL,
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": "tok " * tokens}}],
                "usage": {"prompt_tokens": 5, "completion_tokens": tokens,
                          "total_tokens": 5 + tokens},
            },
        )  # fmt: skip
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.busy: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def connection_lost(self, exc: Exception | None) -> None:
        if self.busy is not None:
            self.busy.cancel()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.busy is None:
            self._drain_requests()

    def _drain_requests(self) -> None:
        transport = self.transport
        assert transport is not None
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
            method, path = head[0].split(" ", 2)[:2]
            length = 0
            close = False
            for line in head[1:]:
                name, _, value = line.partition(":")
                name = name.strip().lower()
                if name == "content-length":
                    length = int(value)
                elif name == "connection" and value.strip().lower() == "close":
                    close = True
            if len(self.buffer) < end + 4 + length:
                return
            body = bytes(self.buffer[end + 4 : end + 4 + length])
            del self.buffer[: end + 4 + length]
            if method == "POST" and path == "/v1/chat/completions":
                stream = b'"stream":true' in body.replace(b" ", b"")
                if not stream:
                    transport.write(self.completion)
                elif self.delay > 0:
                    self.busy = asyncio.ensure_future(self._slow_stream(close))
                    return
                else:
                    transport.write(self.head)
                    for event in self.events:
                        transport.write(event)
            elif method == "GET" and path == "/v1/models":
                transport.write(self.models)
            elif method == "GET" and path == "/health":
                transport.write(self.health)
            else:
                transport.write(self.not_found)
            if close:
                transport.close()
                return

    async def _slow_stream(self, close: bool) -> None:
        transport = self.transport
        assert transport is not None
        transport.write(self.head)
        for event in self.events:
            await asyncio.sleep(self.delay)
            if transport.is_closing():
                return
            transport.write(event)
        self.busy = None
        if close:
            transport.close()
        else:
            self._drain_requests()


async def serve(port: int, tokens: int, delay: float) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: Upstream(tokens, delay), "127.0.0.1", port, backlog=1024
    )
    print(f"ready {port}", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tokens", type=int, default=16, help="SSE events per answer")
    parser.add_argument("--token-delay-ms", type=float, default=0.0)
    args = parser.parse_args()
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    try:
        runner(serve(args.port, args.tokens, args.token_delay_ms / 1000))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
