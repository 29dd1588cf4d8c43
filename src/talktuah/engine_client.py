"""The HTTP client the proxy talks to the engine with: httpx's API on aiohttp's transport.

Every token a user receives is parsed once by this client, so its cost per event is most of
the proxy's cost. httpx's own transport parses HTTP/1.1 with h11, in pure Python: in the
profile of docs/benchmarks.md it was ~45 % of TalkTuah's CPU per streamed answer.
httpx-aiohttp (a transport maintained for exactly this; the openai SDK ships it as its
aiohttp client) keeps the `httpx.AsyncClient` API, timeouts and exceptions, and moves the
wire work to aiohttp, whose parser is C. On the bench machine the bare uvicorn + client floor
went from 1.43 to 0.57 ms of CPU per streamed answer, and from 560 to 2,010 answers/s at
16 streams (bench/proxy.py, the two floor rows).

Two things are set here rather than taken from httpx-aiohttp's defaults:
- no cookies are kept, by httpx or aiohttp: one client serves every caller, and a cookie
  the engine set for one must never ride along on another's request;
- failures keep their meaning. httpx-aiohttp 0.2 maps every `aiohttp.ClientConnectionError`
  (connection refused, server disconnected) to `httpx.ConnectTimeout` (the same bug was
  found in the openai SDK's vendored copy, openai/openai-python#3594), which would turn
  "the engine is down" (502, or 503 during a switch) into "the engine is slow" (504). Here
  only real timeouts are timeouts.

httpx's environment proxies (HTTP_PROXY, ...) do not apply to this client: the engine is
TalkTuah's own process on loopback, or an external URL the operator gave directly.
"""

from __future__ import annotations

import asyncio
import functools
import os
import ssl
from collections.abc import AsyncIterator
from http.cookiejar import CookieJar
from typing import Any, NoReturn

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

#: Idle connections are closed after this long: before the engine's own uvicorn closes them
#: (5 s, in `transformers serve` and vLLM alike), so a request never goes out on a
#: connection the engine is closing at that moment.
KEEPALIVE_SECONDS = 4.0


def engine_client(timeout: httpx.Timeout, max_connections: int = 100) -> httpx.AsyncClient:
    """One pooled client for all engine traffic (create it once, close it with `aclose`).

    The pool is aiohttp's connector, so its limits are set there (the transport's own
    `limits` argument only applies when it builds the session itself).
    """

    def session() -> aiohttp.ClientSession:  # created on first use, inside the event loop
        connector = aiohttp.TCPConnector(limit=max_connections, keepalive_timeout=KEEPALIVE_SECONDS)
        return aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar())

    return httpx.AsyncClient(
        transport=EngineTransport(client=session, verify=shared_ssl_context()),
        timeout=timeout,
        cookies=_NoCookies(),
    )


def shared_ssl_context() -> ssl.SSLContext:
    """The process's one SSL context for engine traffic (see `_ssl_context`)."""
    return _ssl_context(os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))


@functools.cache
def _ssl_context(cafile: str | None, capath: str | None) -> ssl.SSLContext:
    """One CA bundle load per process (per SSL_CERT_FILE / SSL_CERT_DIR), shared by every
    engine client: loading it was ~40 % of building `Services`, paid again by every test
    that builds one, though the engine is plain HTTP on loopback unless an external
    engine's URL says https. httpx reads the same two variables when given `True`."""
    return httpx.create_ssl_context(verify=True)


class _NoCookies(CookieJar):
    """httpx's own jar, that never stores or sends a cookie (aiohttp's is off too).

    A blocking policy alone is not enough on the hot path: the jar would still parse every
    answer's headers to find nothing to keep (~0.05 ms per chat, bench/proxy.py).
    """

    def extract_cookies(self, response: Any, request: Any) -> None:
        return None

    def add_cookie_header(self, request: Any) -> None:
        return None


class EngineTransport(AiohttpTransport):
    """httpx-aiohttp's transport, with failures that keep their meaning (module docstring)."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            response = await super().handle_async_request(request)
        except (httpx.ConnectTimeout, aiohttp.ClientError) as exc:
            _reraise(exc, request, connecting=True)
        response.stream = _Stream(response.stream, request)
        return response


class _Stream(httpx.AsyncByteStream):
    """The body as httpx-aiohttp reads it, with the same correction of its failures."""

    def __init__(self, inner: httpx.AsyncByteStream | httpx.SyncByteStream, request: httpx.Request):
        assert isinstance(inner, httpx.AsyncByteStream)
        self._inner = inner
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._inner:
                yield chunk
        except (httpx.ConnectTimeout, aiohttp.ClientError) as exc:
            _reraise(exc, self._request, connecting=False)

    async def aclose(self) -> None:
        await self._inner.aclose()


def _reraise(exc: Exception, request: httpx.Request, *, connecting: bool) -> NoReturn:
    """Raise the httpx exception that says what happened to `request`."""
    cause = (exc.__cause__ or exc) if isinstance(exc, httpx.ConnectTimeout) else exc
    if isinstance(cause, asyncio.TimeoutError):
        if isinstance(exc, httpx.TimeoutException):
            raise exc
        raise httpx.ReadTimeout(str(exc), request=request) from exc
    message = str(cause) or type(cause).__name__
    if isinstance(cause, aiohttp.ClientConnectorError):
        raise httpx.ConnectError(message, request=request) from cause
    if connecting:  # it connected, then the answer broke off or was not HTTP
        raise httpx.RemoteProtocolError(message, request=request) from cause
    raise httpx.ReadError(message, request=request) from cause
