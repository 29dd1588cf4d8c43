"""uvicorn's HTTP protocol with a deadline on the request head.

Measured with uvicorn 0.54 (httptools): its only connection timer is `timeout_keep_alive`,
armed when a response ends. A client that connects and sends nothing, or sends half a
request head (`GET / HTTP/1.1\\r\\nHost: x\\r\\n`) and then nothing, holds its connection, a
file descriptor and a parser for as long as it likes: a few hundred such sockets (slowloris)
exhaust the process. `BoundedHttpToolsProtocol` gives every request head the same budget as
an idle keep-alive connection (`TALKTUAH_IDLE_TIMEOUT`), counted from the connection's
start or the head's first byte and not extended by further bytes, so a head dripped a byte
at a time is cut too. A request whose head has arrived is not limited here: streams and
long answers run as long as they need.
"""

from __future__ import annotations

import asyncio
import logging

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

logger = logging.getLogger(__name__)


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """`HttpToolsProtocol` that closes a connection whose request head is not complete within
    `timeout_keep_alive` seconds (uvicorn's `--http` takes the class)."""

    _head_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_deadline()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm_head_deadline()

    def on_headers_complete(self) -> None:
        self._disarm_head_deadline()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_deadline()
        super().connection_lost(exc)

    def _arm_head_deadline(self) -> None:
        if self._head_deadline is None:
            self._head_deadline = self.loop.call_later(
                self.timeout_keep_alive, self._head_timed_out
            )

    def _disarm_head_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_timed_out(self) -> None:
        self._head_deadline = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            # A pipelined head waits behind a response still being written: not the
            # client's delay. Look again later.
            self._arm_head_deadline()
            return
        if self.client:
            logger.debug("closing %s:%d: no complete request head in time", *self.client)
        self.transport.close()
