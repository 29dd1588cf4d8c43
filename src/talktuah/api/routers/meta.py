"""The public routes: what this server is, whether it is healthy, and its metrics."""

from __future__ import annotations

import os
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from ... import __version__
from ..deps import ServicesDep

router = APIRouter(tags=["meta"])

ENDPOINTS = {
    "download_model": "/api/download-model",
    "download_progress": "/api/download-progress",
    "downloads": "/api/downloads",
    "delete_model": "/api/delete-model",
    "model_status": "/api/model-status",
    "models_local": "/api/models/local",
    "health": "/api/healthz",
    "metrics": "/metrics",
    "switch_model": "/api/switch-model",
    "model_loading_status": "/api/model-loading-status",
    "chat": "/api/chat",
    "models": "/api/models",
    "openai": "/v1",
    "docs": "/docs",
}


@router.get("/")
def root() -> dict[str, Any]:
    return {"name": "TalkTuah", "version": __version__, "endpoints": ENDPOINTS}


@router.get("/api/healthz")
def healthz(services: ServicesDep) -> JSONResponse:
    """Database, models dir and engine: `degraded` while the engine does not serve."""
    details: dict[str, str] = {}
    try:
        services.state.query("SELECT 1")
        details["database"] = "ok"
    except Exception as exc:  # any failure here is what health reports, never a 500
        details["database"] = f"error: {type(exc).__name__}"
    # Public route: states only, never paths or messages that could carry them.
    models_dir = services.settings.models_dir
    if not models_dir.is_dir():
        details["models_dir"] = "missing"
    elif not os.access(models_dir, os.W_OK):
        details["models_dir"] = "read-only"
    else:
        details["models_dir"] = "ok"
    engine = services.engine.status()
    ready = engine["engine_state"] == "ready"
    details["engine"] = f"{engine['engine']}: {engine['engine_state']}"
    if details["database"] != "ok":
        health = "unhealthy"
    elif details["models_dir"] != "ok" or not ready:
        health = "degraded"
    else:
        health = "healthy"
    body = {
        "status": health,
        "model_loaded": ready,
        "upstream_healthy": ready,
        "details": details,
    }
    return JSONResponse(body, status_code=503 if health == "unhealthy" else 200)


@router.get("/metrics")
def metrics(request: Request, services: ServicesDep) -> Response:
    registry = request.app.state.metrics
    registry.models_local.set(len(services.store.list()))
    return Response(registry.render(), media_type=CONTENT_TYPE_LATEST)
