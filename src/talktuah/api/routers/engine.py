"""Which model the engine serves: switch it, and watch it load."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response, status

from ...model_ref import resolve_model_id
from ..deps import ServicesDep

router = APIRouter(prefix="/api", tags=["engine"])


@router.post("/switch-model", status_code=status.HTTP_202_ACCEPTED)
def switch_model(
    services: ServicesDep,
    model_id: Annotated[str, Query(description="A downloaded model, e.g. org/name")],
) -> dict[str, Any]:
    model_id = resolve_model_id(model_id)  # a pasted Hub URL names its repo
    services.engine.switch(model_id)
    return {
        "status": "switching",
        "model_id": model_id,
        "message": f"Loading {model_id}; it becomes the active model once it serves.",
        "info": "Poll GET /api/model-loading-status until status is ready (or failed).",
    }


@router.get("/model-loading-status")
def model_loading_status(services: ServicesDep, response: Response) -> dict[str, Any]:
    return services.engine.status()
