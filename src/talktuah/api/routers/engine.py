"""Which models the engines serve: switch the default, load and unload others, list them
(`/api/ps`), watch the default load, dismiss the last failure."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response, status

from ...engine.budget import parse_keep_alive
from ...engine.supervisor import SwitchOutcome
from ...errors import InvalidParameterError
from ...model_ref import resolve_model_id
from .. import schemas
from ..deps import EngineDep, ServicesDep

router = APIRouter(prefix="/api", tags=["engine"])


@router.post(
    "/switch-model",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=schemas.ModelAction,
    response_model_exclude_unset=True,
)
def switch_model(
    engine: EngineDep,
    response: Response,
    model_id: Annotated[str, Query(description="A downloaded model, e.g. org/name")],
    force: Annotated[
        bool, Query(description="Reload it even if it is the model being served")
    ] = False,
) -> schemas.ModelAction:
    """202 while it loads; 200 at once when it serves already (or is loading) and not `force`."""
    model_id = resolve_model_id(model_id)  # a pasted Hub URL names its repo
    outcome = engine.switch(model_id, force=force)  # 409 for an external engine
    if outcome == SwitchOutcome.ALREADY_SERVING:
        response.status_code = status.HTTP_200_OK
        return schemas.ModelAction(
            status="ready",
            model_id=model_id,
            message=f"{model_id} is already serving; nothing to do.",
            info="Add force=true to reload it.",
        )
    if outcome == SwitchOutcome.ALREADY_LOADING:
        response.status_code = status.HTTP_200_OK
        message = f"{model_id} is already loading; it becomes the active model once it serves."
    else:
        message = f"Loading {model_id}; it becomes the active model once it serves."
    return schemas.ModelAction(
        status="switching",
        model_id=model_id,
        message=message,
        info="Poll GET /api/model-loading-status until status is ready (or failed).",
    )


@router.get("/model-loading-status", response_model=schemas.EngineStatus)
def model_loading_status(engine: EngineDep) -> dict[str, Any]:
    return engine.status()


@router.post("/engine/dismiss-failure", response_model=schemas.Dismissed)
def dismiss_failure(engine: EngineDep) -> schemas.Dismissed:
    """Forget `last_failure` (it stays in the engine's log); the status says what serves."""
    dismissed = engine.dismiss_failure()
    message = "The last failure was dismissed." if dismissed else "No failure to dismiss."
    return schemas.Dismissed(dismissed=dismissed, message=message)


@router.get("/ps", response_model=schemas.LoadedModels)
def ps(engine: EngineDep) -> dict[str, Any]:
    """The loaded models (Ollama's `/api/ps` shape, plus each one's state and failure)."""
    return {"models": engine.pool.ps()}


@router.post(
    "/load-model",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=schemas.ModelAction,
    response_model_exclude_unset=True,
)
def load_model(
    services: ServicesDep,
    response: Response,
    model_id: Annotated[str, Query(description="A downloaded model, e.g. org/name")],
    keep_alive: Annotated[
        str | None,
        Query(description="How long it stays loaded idle: 5m, 30s, -1 (forever), 0"),
    ] = None,
) -> schemas.ModelAction:
    """Load a model beside those loaded (evicting the least recently used idle one if the
    limits say so): 202 while it loads, 200 when it is loaded already."""
    model_id = resolve_model_id(model_id)
    seconds = ... if keep_alive is None else _keep_alive(keep_alive)
    if services.load_model(model_id, seconds):
        response.status_code = status.HTTP_200_OK
        return schemas.ModelAction(
            status="ready", model_id=model_id, message=f"{model_id} is loaded."
        )
    return schemas.ModelAction(
        status="loading",
        model_id=model_id,
        message=f"Loading {model_id}.",
        info="Poll GET /api/ps until its state is ready (or failed).",
    )


def _keep_alive(value: str) -> float | None:
    """Ollama's keep_alive from a query parameter: a duration, or whole seconds."""
    try:
        return parse_keep_alive(int(value) if value.lstrip("-").isdigit() else value)
    except ValueError as exc:
        raise InvalidParameterError(f"{exc}.") from exc


@router.post("/unload-model", response_model=schemas.ModelAction, response_model_exclude_unset=True)
def unload_model(
    services: ServicesDep,
    model_id: Annotated[str, Query(description="A loaded model")],
) -> schemas.ModelAction:
    """Stop a model's engine now. The default model may be unloaded too: requests with no
    `model` then load it again on demand."""
    model_id = resolve_model_id(model_id)
    services.unload_model(model_id)
    return schemas.ModelAction(
        status="unloading", model_id=model_id, message=f"Unloading {model_id}."
    )
