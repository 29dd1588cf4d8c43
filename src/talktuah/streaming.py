"""The streamed answer of the proxy: bytes to the client until the end or until it leaves.

Starlette's StreamingResponse notices a client that left by running the stream and a
receive() loop side by side in an anyio task group, set up for every response. On the
proxy's hot path that set-up (cancel scopes, a wrapper task that must be scheduled before
the first byte moves) cost 0.14 ms of time to first byte and 0.15 ms of CPU per request
(bench/proxy.py, see docs/benchmarks.md). Here the stream runs in the request's own task
and one plain asyncio task waits for `http.disconnect`, cancelling the stream if it comes
first. (uvicorn speaks ASGI 2.3: its send() stays silent after a disconnect, so something
must watch receive().)
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Callable

from starlette.responses import Response
from starlette.types import Receive, Scope, Send


class EngineStream(Response):
    """Stream `body` as the response; when the client leaves, stop and close it.

    Closing `body` (an async generator) runs its `finally`, which is where the proxy lets
    go of the engine's response, so the engine stops generating for nobody.
    """

    def __init__(
        self,
        body: AsyncGenerator[bytes, None],
        *,
        headers: dict[str, str],
        media_type: str,
        on_close: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.body_iterator = body
        self.status_code = 200
        self.media_type = media_type
        self.background = None
        self.on_close = on_close
        self.init_headers(headers)
        self.client_left = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        streaming = asyncio.current_task()
        assert streaming is not None
        finished = False

        async def watch() -> None:
            try:
                while (await receive())["type"] != "http.disconnect":
                    pass
            except Exception:  # the server's receive broke: nothing left to watch
                return
            if not finished:
                self.client_left = True
                streaming.cancel()

        watcher = asyncio.create_task(watch())
        try:
            await send(
                {"type": "http.response.start", "status": self.status_code,
                 "headers": self.raw_headers}
            )  # fmt: skip
            async for chunk in self.body_iterator:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            if not self.client_left:
                raise
            streaming.uncancel()  # our own cancel, consumed: the client is gone, not the server
        finally:
            finished = True
            watcher.cancel()
            await self.body_iterator.aclose()
            if self.on_close is not None:
                await self.on_close()
