"""Build the FastAPI app around a `Services` instance."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles

from .. import __version__
from ..services import Services
from ..ui import STATIC_DIR
from .auth import AuthDep
from .direct import DirectRoutes
from .docs import install_docs
from .errors import error_responses, install_error_handlers
from .middleware import RequestContextMiddleware
from .routers import agents, downloads, engine, hub, keys, meta, models, openai, storage

# Routes anyone may call; everything else needs the bearer key. The OpenAPI schema and its
# viewers (and their scripts, api/docs.py) are public too: they describe the API but hold no
# data, and a browser opening /docs cannot send a bearer header.
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
        docs_url=None,  # served by install_docs, without a CDN
        redoc_url=None,
    )
    install_docs(app, app.title)
    app.state.services = services
    install_error_handlers(app)
    app.include_router(meta.router, responses=error_responses(413, 422))
    common = (401, 403, 413, 422, 429)
    for router, extra in (
        (models.router, (404, 409)),
        (downloads.router, (404, 409, 502, 507)),
        (hub.router, (404, 502)),
        (storage.router, ()),
        (engine.router, (404, 409)),
        (openai.router, (400, 404, 502, 503, 504)),
        (agents.router, (400, 404, 501, 502, 503, 504)),
        (keys.router, (404, 409)),
    ):
        app.include_router(
            router, dependencies=[AuthDep], responses=error_responses(*common, *extra)
        )
    # The dashboard is static; it asks for the key in the browser and calls the API with it.
    app.mount("/ui", StaticFiles(directory=STATIC_DIR, html=True), name="ui")
    settings = services.settings
    app.add_middleware(DirectRoutes, fastapi_app=app)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
            expose_headers=["X-Request-ID", "Retry-After"],
        )
    app.add_middleware(
        RequestContextMiddleware,
        metrics=services.metrics,
        max_body=settings.max_request_bytes,
        access_log=settings.access_log,
    )
    return app
