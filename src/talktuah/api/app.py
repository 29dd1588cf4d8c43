"""Build the FastAPI app around a `Services` instance."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from fastapi.staticfiles import StaticFiles

from .. import __version__
from ..metrics import Metrics
from ..services import Services
from ..ui import STATIC_DIR
from .auth import AuthDep
from .errors import install_error_handlers
from .routers import downloads, engine, keys, meta, models, openai

# Routes anyone may call; everything else needs the bearer key. The OpenAPI schema and its
# viewers are public too: they describe the API but hold no data, and a browser opening
# /docs cannot send a bearer header.
PUBLIC_PATHS = frozenset({"/", "/api/healthz", "/metrics"})
DOC_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})


def create_app(services: Services, *, close_on_shutdown: bool = True) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services.start()
        yield
        await services.proxy.close()
        if close_on_shutdown:
            services.close()

    app = FastAPI(
        title="TalkTuah",
        version=__version__,
        description="Model lifecycle API and OpenAI-compatible proxy. "
        "Send `Authorization: Bearer <PROXY_API_KEY>` to every route but /, "
        "/api/healthz and /metrics.",
        lifespan=lifespan,
    )
    app.state.services = services
    app.state.metrics = Metrics()
    install_error_handlers(app)
    app.include_router(meta.router)
    app.include_router(models.router, dependencies=[AuthDep])
    app.include_router(downloads.router, dependencies=[AuthDep])
    app.include_router(engine.router, dependencies=[AuthDep])
    app.include_router(openai.router, dependencies=[AuthDep])
    app.include_router(keys.router, dependencies=[AuthDep])
    # The dashboard is static; it asks for the key in the browser and calls the API with it.
    app.mount("/ui", StaticFiles(directory=STATIC_DIR, html=True), name="ui")
    _install_metrics_middleware(app)
    return app


def _route_template(request: Request) -> str:
    """The matched route's template (`/api/downloads/{job_id}`), to keep label sets small."""
    route = request.scope.get("route")
    return str(getattr(route, "path", "unmatched"))


def _install_metrics_middleware(app: FastAPI) -> None:
    metrics: Metrics = app.state.metrics

    @app.middleware("http")
    async def count_requests(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        route = _route_template(request)
        metrics.requests.labels(request.method, route, str(response.status_code)).inc()
        metrics.latency.labels(request.method, route).observe(time.perf_counter() - started)
        return response
