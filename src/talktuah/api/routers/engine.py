"""Which models the engines serve: switch the default, load and unload others, list them
(`/api/ps`), watch the default load, dismiss the last failure."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response, status

from ...engine.budget import NoRoom, parse_keep_alive
from ...engine.lifecycle import InstanceState
from ...engine.supervisor import SwitchOutcome
from ...errors import (
    InvalidParameterError,
    ModelNotReadyError,
    ModelNotServedError,
    PoolFullError,
    SwitchNotSupportedError,
)
from ...model_ref import resolve_model_id
from .. import schemas
from ..deps import ServicesDep

router = APIRouter(prefix="/api", tags=["engine"])


@router.post(
    "/switch-model",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=schemas.ModelAction,
    response_model_exclude_unset=True,
)
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


@router.get("/model-loading-status", response_model=schemas.EngineStatus)
def model_loading_status(services: ServicesDep, response: Response) -> dict[str, Any]:
    return services.engine.status()


@router.post("/engine/dismiss-failure", response_model=schemas.Dismissed)
def dismiss_failure(services: ServicesDep) -> dict[str, Any]:
    """Forget `last_failure` (it stays in the engine's log); the status says what serves."""
    dismissed = services.engine.dismiss_failure()
    return {
        "dismissed": dismissed,
        "message": "The last failure was dismissed." if dismissed else "No failure to dismiss.",
    }


@router.get("/ps", response_model=schemas.LoadedModels)
def ps(services: ServicesDep) -> dict[str, Any]:
    """The loaded models (Ollama's `/api/ps` shape, plus each one's state and failure)."""
    return {"models": services.engine.pool.ps()}


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
) -> dict[str, Any]:
    """Load a model beside those loaded (evicting the least recently used idle one if the
    limits say so): 202 while it loads, 200 when it is loaded already."""
    pool = services.engine.pool
    if pool.external:
        raise SwitchNotSupportedError(
            "The external engine serves what it serves: load models where it runs "
            "(TALKTUAH_ENGINE=auto|transformers|llamacpp|vllm|docker lets TalkTuah load them)."
        )
    model_id = resolve_model_id(model_id)
    model = services.store.get(model_id)  # ModelNotFoundError -> 404
    if not model.complete:
        raise ModelNotReadyError(
            f"{model_id} is not completely downloaded. Wait for its download "
            "(GET /api/download-progress?model_id=...) or download it again.",
            model_id=model_id,
        )
    seconds: Any = ...
    if keep_alive is not None:
        try:
            seconds = parse_keep_alive(
                int(keep_alive) if keep_alive.lstrip("-").isdigit() else keep_alive
            )
        except ValueError as exc:
            raise InvalidParameterError(f"{exc}.") from exc
    before = pool.instances.get(model_id)
    try:
        instance = pool.ensure(
            model_id, keep_alive=None if model_id == pool.default_id else seconds
        )
    except NoRoom as full:
        raise PoolFullError(str(full), retry_after=5, model_id=model_id) from full
    if before is instance and instance.status.state == InstanceState.READY:
        response.status_code = status.HTTP_200_OK
        return {"status": "ready", "model_id": model_id, "message": f"{model_id} is loaded."}
    return {
        "status": "loading",
        "model_id": model_id,
        "message": f"Loading {model_id}.",
        "info": "Poll GET /api/ps until its state is ready (or failed).",
    }


@router.post("/unload-model", response_model=schemas.ModelAction, response_model_exclude_unset=True)
def unload_model(
    services: ServicesDep,
    model_id: Annotated[str, Query(description="A loaded model")],
) -> dict[str, Any]:
    """Stop a model's engine now. The default model may be unloaded too: requests with no
    `model` then load it again on demand."""
    model_id = resolve_model_id(model_id)
    if not services.engine.pool.unload(model_id, "unloaded on request (POST /api/unload-model)."):
        raise ModelNotServedError(
            f"{model_id} is not loaded; GET /api/ps lists the loaded models.", model_id=model_id
        )
    return {"status": "unloading", "model_id": model_id, "message": f"Unloading {model_id}."}
