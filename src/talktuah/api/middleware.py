"""Pure ASGI middleware: request ids, body size limits, and HTTP metrics.

Pure ASGI (not BaseHTTPMiddleware) so streamed proxy responses pass through untouched.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..downloads.callback_url import redact_userinfo
from ..logs import request_id
from ..metrics import Metrics

logger = logging.getLogger(__name__)
access_logger = logging.getLogger("talktuah.access")

# The dashboard loads nothing from elsewhere and has no inline script or style.
_UI_CSP = (
    b"default-src 'self'; img-src 'self' data:; script-src 'self'; style-src 'self'; "
    b"connect-src 'self'; frame-ancestors 'none'"
)

_VALID_ID = re.compile(r"^[A-Za-z0-9._\-]{1,64}$")


class BodyTooLarge(Exception):
    pass


class RequestContextMiddleware:
    """Give each request an id (the client's X-Request-ID if sane), echo it, time it, and
    refuse bodies over the limit with 413 before they are read into memory."""

    def __init__(
        self, app: ASGIApp, *, metrics: Metrics, max_body: int, access_log: bool = True
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body = max_body
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode().lower(): v.decode() for k, v in scope.get("headers", [])}
        given = headers.get("x-request-id", "")
        rid = given if _VALID_ID.match(given) else uuid.uuid4().hex
        token = request_id.set(rid)
        started = time.perf_counter()
        status_code = 500
        response_started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal status_code, response_started
            if message["type"] == "http.response.start":
                status_code = message["status"]
                response_started = True
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", rid.encode())]
                if scope.get("path", "").startswith("/ui"):
                    message["headers"].append((b"content-security-policy", _UI_CSP))
                self._observe(scope, status_code, started)
            await send(message)

        received = 0

        async def receive_wrapper() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise BodyTooLarge
            return message

        try:
            length = headers.get("content-length", "")
            if length.isdigit() and int(length) > self.max_body:
                await self._too_large(send_wrapper, rid)
                return
            await self.app(scope, receive_wrapper, send_wrapper)
        except BodyTooLarge:
            if not response_started:
                await self._too_large(send_wrapper, rid)
        except Exception as exc:
            # Here, not in an exception handler: Starlette runs those outside all middleware,
            # where the request id is already gone.
            logger.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            if response_started:
                raise
            await self._send_json(
                send_wrapper,
                500,
                {
                    "detail": f"Internal error ({type(exc).__name__}). It is logged under "
                    f"request id {rid}; please report it with that id.",
                    "code": "internal_error",
                    "request_id": rid,
                },
            )
        finally:
            if self.access_log and access_logger.isEnabledFor(logging.INFO):
                self._log_access(scope, status_code, started)
            request_id.reset(token)

    @staticmethod
    def _log_access(scope: Scope, status_code: int, started: float) -> None:
        """One line per request, written when it ends: a stream's line carries its duration.

        uvicorn's own access log is off (cli/main.py): it writes when the response starts,
        inside every request's time to first byte, and cannot say how long a stream lasted.
        """
        client = scope.get("client")
        query = scope.get("query_string", b"")
        # A query may carry a callback_url with `user:password@` in it: never into a log.
        path = scope.get("path", "") + (
            "?" + redact_userinfo(query.decode("latin-1")) if query else ""
        )
        access_logger.info(
            '%s - "%s %s HTTP/%s" %d %.1f ms',
            f"{client[0]}:{client[1]}" if client else "-",
            scope.get("method", ""),
            path,
            scope.get("http_version", "1.1"),
            status_code,
            (time.perf_counter() - started) * 1000,
        )

    def _observe(self, scope: Scope, status_code: int, started: float) -> None:
        route = scope.get("route")
        template = str(getattr(route, "path", "unmatched"))
        method = scope.get("method", "")
        self.metrics.requests.labels(method, template, str(status_code)).inc()
        self.metrics.latency.labels(method, template).observe(time.perf_counter() - started)

    async def _too_large(self, send: Send, rid: str) -> None:
        await self._send_json(
            send,
            413,
            {
                "detail": f"The request body is larger than {self.max_body} bytes "
                "(TALKTUAH_MAX_REQUEST_BYTES).",
                "code": "request_too_large",
                "request_id": rid,
            },
        )

    async def _send_json(self, send: Send, status: int, payload: dict[str, object]) -> None:
        body = json.dumps(payload).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],  # fmt: skip
            }
        )
        await send({"type": "http.response.body", "body": body})
