"""POST a job's final state to a `callback_url` (an n8n Webhook node, typically).

Sent from a thread of its own so a slow webhook never holds a download worker; retried with
backoff; a failure is logged and never changes the job.

The receiver is untrusted (callback_url.py says why), so each attempt:
- resolves the host again and refuses it if it now points somewhere private (DNS
  rebinding), then connects to one of the addresses it checked, never to a fresh lookup;
- follows no redirect: a 3xx is a failed delivery, logged, not a second request;
- reads at most `RESPONSE_LIMIT` bytes of the answer, whatever length it announces;
- ends at one wall-clock deadline. httpcore's timeouts are per read, so a receiver dripping
  a byte a second would hold the thread for ever; a timer shuts the socket down instead.
Shutdown waits `close_wait` seconds in all for deliveries in flight; the threads are daemons
and are abandoned after that.

httpcore is used directly (not httpx) because it lets us choose the connected address
through its network backend; it never follows redirects by itself.
"""

from __future__ import annotations

import base64
import json
import logging
import socket
import ssl
import threading
import time
from typing import Any

import httpcore
import httpx

from .. import __version__
from ..errors import InvalidCallbackUrlError
from .callback_url import CallbackPolicy, redact_userinfo

logger = logging.getLogger(__name__)

RESPONSE_LIMIT = 4096
CLOSE_WAIT = 3.0


class _Failed(Exception):
    """The receiver answered with an error status; a later attempt may succeed."""


class _Undeliverable(_Failed):
    """An answer retrying will not change (a redirect)."""


class _Deadline:
    """One attempt's wall-clock limit: when it passes, every socket it guards is shut down,
    which ends a blocked read or TLS handshake at once."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def guard(self, sock: socket.socket) -> None:
        # A duplicate: TLS detaches the original socket object, the connection stays shared.
        with self._lock:
            self._sockets.append(sock.dup())
            if self.expired:
                self._shutdown()

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            self._shutdown()

    def _shutdown(self) -> None:
        for sock in self._sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        self._timer.cancel()
        with self._lock:
            for sock in self._sockets:
                sock.close()
            self._sockets.clear()


class _SmallReads(httpcore.NetworkStream):
    """Reads of at most `RESPONSE_LIMIT` bytes (httpcore asks for 64 KiB), so stopping after
    `RESPONSE_LIMIT` bytes of body means no more than that was taken off the socket."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(min(max_bytes, RESPONSE_LIMIT), timeout)

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, timeout)

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        return _SmallReads(self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _PinnedBackend(httpcore.SyncBackend):
    """Connects to the address that was checked, whatever host name the request carries
    (the name still goes into Host and TLS SNI, so certificates are checked against it)."""

    def __init__(self, address: str, deadline: _Deadline) -> None:
        self.address = address
        self.deadline = deadline

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.NetworkStream:
        stream = super().connect_tcp(self.address, port, timeout, local_address, socket_options)
        self.deadline.guard(stream.get_extra_info("socket"))
        return _SmallReads(stream)


class CallbackSender:
    def __init__(
        self,
        *,
        policy: CallbackPolicy | None = None,
        retries: int = 3,
        backoff: float = 1.0,
        timeout: float = 10.0,
        close_wait: float = CLOSE_WAIT,
    ) -> None:
        self.policy = policy or CallbackPolicy()
        self.retries = retries
        self.backoff = backoff
        self.timeout = timeout
        self.close_wait = close_wait
        self._threads: list[threading.Thread] = []
        self._closing = threading.Event()
        self._ssl_context: ssl.SSLContext | None = None

    def send(self, url: str, payload: dict[str, Any]) -> None:
        """Deliver `payload` to `url` from a thread of its own; returns at once."""
        thread = threading.Thread(
            target=self._deliver, args=(url, payload), name="talktuah-callback", daemon=True
        )
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def _deliver(self, url: str, payload: dict[str, Any]) -> None:
        body = json.dumps(payload).encode()
        job_id = payload.get("job_id")
        shown = redact_userinfo(url)
        cause = "not attempted: shutting down"
        attempt = 0
        while attempt <= self.retries and not self._closing.is_set():
            attempt += 1
            try:
                status = self._attempt(url, body)
                logger.info("callback for job %s to %s delivered (HTTP %d)", job_id, shown, status)
                return
            except InvalidCallbackUrlError as exc:
                logger.warning("callback for job %s to %s refused: %s", job_id, shown, exc)
                return
            except _Undeliverable as exc:
                cause = str(exc)
                break
            except _Failed as exc:
                cause = str(exc)
            except (httpcore.NetworkError, httpcore.TimeoutException, httpcore.ProtocolError,
                    OSError) as exc:  # fmt: skip
                cause = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            if attempt <= self.retries and self._closing.wait(self.backoff * 2 ** (attempt - 1)):
                break
        logger.warning(
            "callback for job %s to %s failed after %d attempts (%s)",
            job_id, shown, attempt, redact_userinfo(cause),
        )  # fmt: skip

    def _attempt(self, url: str, body: bytes) -> int:
        """One POST: the receiver's 2xx status, or an exception saying what went wrong."""
        target = self.policy.vet(url)
        addresses = self.policy.resolve(target)
        parsed = httpx.URL(url)
        headers = [
            (b"Host", parsed.netloc),
            (b"Content-Type", b"application/json"),
            (b"Accept", b"*/*"),
            (b"User-Agent", f"talktuah/{__version__}".encode()),
        ]
        if parsed.userinfo:
            pair = f"{parsed.username}:{parsed.password}".encode()
            headers.append((b"Authorization", b"Basic " + base64.b64encode(pair)))
        request_url = httpcore.URL(
            scheme=parsed.raw_scheme, host=parsed.raw_host, port=parsed.port,
            target=parsed.raw_path,
        )  # fmt: skip
        limits = dict.fromkeys(("connect", "read", "write", "pool"), self.timeout)
        deadline = _Deadline(self.timeout)
        try:
            for index, address in enumerate(addresses):
                try:
                    status = self._post(address, deadline, request_url, headers, body, limits)
                    break
                except httpcore.ConnectError:
                    if index == len(addresses) - 1 or deadline.expired:
                        raise
        except (httpcore.NetworkError, httpcore.ProtocolError) as exc:
            if deadline.expired:
                raise httpcore.ReadTimeout(f"no answer within {self.timeout:g} s") from exc
            raise
        finally:
            deadline.close()
        if 300 <= status < 400:
            raise _Undeliverable(
                f"HTTP {status}: redirects are not followed; set callback_url to the final URL"
            )
        if status >= 400:
            raise _Failed(f"HTTP {status}")
        return status

    def _post(
        self,
        address: str,
        deadline: _Deadline,
        url: httpcore.URL,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        limits: dict[str, float],
    ) -> int:
        """POST through a connection to `address`; the status, after at most RESPONSE_LIMIT
        bytes of the answer (a body that ends early or stalls after the status is fine)."""
        backend = _PinnedBackend(address, deadline)
        with httpcore.ConnectionPool(
            ssl_context=self._ssl(), network_backend=backend, max_connections=1
        ) as pool:
            with pool.stream(
                "POST", url, headers=headers, content=body, extensions={"timeout": limits}
            ) as response:
                read = 0
                try:
                    for chunk in response.iter_stream():
                        read += len(chunk)
                        if read >= RESPONSE_LIMIT:
                            break
                except (httpcore.NetworkError, httpcore.TimeoutException,
                        httpcore.ProtocolError):  # fmt: skip
                    pass
                return response.status

    def _ssl(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            self._ssl_context = httpx.create_ssl_context()
        return self._ssl_context

    def close(self, timeout: float) -> None:
        """Wait for deliveries in flight, `close_wait` seconds at most in all (not per
        thread); retries not yet started are dropped."""
        self._closing.set()
        deadline = time.monotonic() + min(timeout, self.close_wait)
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
