"""Which model the engine serves: switch it, watch it load, dismiss the last failure."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response, status

from ...engine.supervisor import SwitchOutcome
from ...model_ref import resolve_model_id
from ..deps import ServicesDep

router = APIRouter(prefix="/api", tags=["engine"])


@router.post("/switch-model", status_code=status.HTTP_202_ACCEPTED)
def switch_model(
    services: ServicesDep,
    response: Response,
    model_id: Annotated[str, Query(description="A downloaded model, e.g. org/name")],
    force: Annotated[
        bool, Query(description="Reload it even if it is the model being served")
    ] = False,
) -> dict[str, Any]:
    """202 while it loads; 200 at once when it serves already (or is loading) and not `force`."""
    model_id = resolve_model_id(model_id)  # a pasted Hub URL names its repo
    outcome = services.engine.switch(model_id, force=force)  # 409 for an external engine
    if outcome == SwitchOutcome.ALREADY_SERVING:
        response.status_code = status.HTTP_200_OK
        return {
            "status": "ready",
            "model_id": model_id,
            "message": f"{model_id} is already serving; nothing to do.",
            "info": "Add force=true to reload it.",
        }
    if outcome == SwitchOutcome.ALREADY_LOADING:
        response.status_code = status.HTTP_200_OK
        message = f"{model_id} is already loading; it becomes the active model once it serves."
    else:
        message = f"Loading {model_id}; it becomes the active model once it serves."
    return {
        "status": "switching",
        "model_id": model_id,
        "message": message,
        "info": "Poll GET /api/model-loading-status until status is ready (or failed).",
    }


@router.get("/model-loading-status")
def model_loading_status(services: ServicesDep, response: Response) -> dict[str, Any]:
    return services.engine.status()


@router.post("/engine/dismiss-failure")
def dismiss_failure(services: ServicesDep) -> dict[str, Any]:
    """Forget `last_failure` (it stays in the engine's log); the status says what serves."""
    dismissed = services.engine.dismiss_failure()
    return {
        "dismissed": dismissed,
        "message": "The last failure was dismissed." if dismissed else "No failure to dismiss.",
    }
