"""The proxy's hot routes, dispatched to their handlers without FastAPI's per-request stack.

A chat through TalkTuah passes FastAPI's routing, dependency solving and its exception,
exit-stack, body-limit and telemetry layers before the first byte can move. Measured with
bench/proxy.py on 2 CPUs, that stack is ~0.2 ms of the time to first byte and ~0.25 ms of
CPU per chat — the difference between meeting and missing "added TTFB <= 1 ms" (see
docs/benchmarks.md). So for the few (method, path) pairs in `DIRECT`, this middleware
calls the very same route handler itself, after the very same `authorize`, and renders
errors with the app's own exception handlers. The routes stay declared in FastAPI, so the
OpenAPI schema, the scope table and every other route are untouched; anything else
(another method, a trailing slash, a websocket) goes on to FastAPI as usual.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import NamedTuple, cast

from fastapi import FastAPI, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from .auth import authorize, bearer
from .routers import agents, openai

Endpoint = Callable[[Request], Awaitable[Response]]
Handler = Callable[[Request, Exception], Awaitable[Response]]

#: The streaming proxy routes (every chat passes here) and their handlers, which are also
#: declared in routers/openai.py and routers/agents.py under the same paths (a test holds
#: the two together).
DIRECT: dict[tuple[str, str], Endpoint] = {
    ("POST", "/v1/chat/completions"): openai.chat_completions,
    ("POST", "/v1/completions"): openai.completions,
    ("POST", "/v1/embeddings"): openai.embeddings,
    ("POST", "/api/chat"): openai.chat,
    ("POST", "/v1/messages"): agents.messages,
    ("POST", "/v1/messages/count_tokens"): agents.count_tokens,
    ("POST", "/v1/responses"): agents.responses,
}


class DirectRoute(NamedTuple):
    """What the rest of the stack reads from `scope["route"]`: the path template."""

    path: str


class DirectRoutes:
    def __init__(self, app: ASGIApp, *, fastapi_app: FastAPI) -> None:
        self.app = app
        self.fastapi_app = fastapi_app
        for (_method, path), endpoint in DIRECT.items():
            if list(inspect.signature(endpoint).parameters) != ["request"]:
                raise RuntimeError(f"{path}: a DIRECT handler takes only `request`")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = None
        if scope["type"] == "http":
            endpoint = DIRECT.get((scope["method"], scope["path"]))
        if endpoint is None:
            await self.app(scope, receive, send)
            return
        scope["app"] = self.fastapi_app
        scope["route"] = DirectRoute(scope["path"])  # authorize's scope lookup, metrics label
        request = Request(scope, receive)
        try:
            await authorize(request, await bearer(request))
            response = await endpoint(request)
        except Exception as exc:
            handler = self._handler_for(exc)
            if handler is None:
                raise  # the request middleware answers 500 with the request id
            response = await handler(request, exc)
        await response(scope, receive, send)

    def _handler_for(self, exc: Exception) -> Handler | None:
        handlers = self.fastapi_app.exception_handlers
        for cls in type(exc).__mro__:
            if cls in handlers:
                return cast(Handler, handlers[cls])  # ours are all async (api/errors.py)
        return None
