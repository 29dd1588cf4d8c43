"""The public routes: what this server is, whether it is healthy, and its metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from ... import __version__
from ...health import check_health
from .. import schemas
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


@router.get("/", response_model=schemas.Root)
def root() -> schemas.Root:
    return schemas.Root(name="TalkTuah", version=__version__, endpoints=ENDPOINTS)


@router.get(
    "/api/healthz",
    response_model=schemas.Health,
    responses={503: {"model": schemas.Health, "description": "Unhealthy: see details"}},
)
def healthz(services: ServicesDep) -> JSONResponse:
    """`degraded` while the engine does not serve, the disk is nearly full, or the state
    database cannot be written; `unhealthy` (503) when the database cannot be read."""
    health, body = check_health(services)
    return JSONResponse(body, status_code=503 if health == "unhealthy" else 200)


@router.get("/metrics")
def metrics(services: ServicesDep) -> Response:
    """TalkTuah's metrics, then the engine's own when it has them (vLLM does)."""
    return Response(services.metrics_text(), media_type=CONTENT_TYPE_LATEST)
