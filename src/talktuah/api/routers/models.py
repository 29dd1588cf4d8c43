"""The model store over HTTP: status, local list and delete."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query

from ...model_ref import resolve_model_id
from ...store import LocalModel
from .. import schemas
from ..deps import ServicesDep, StoreDep

router = APIRouter(prefix="/api", tags=["models"])

ModelIdQuery = Query(description="Hugging Face repo id, e.g. Qwen/Qwen2.5-0.5B-Instruct")


@router.get("/model-status", response_model=schemas.ModelStatus)
def model_status(services: ServicesDep) -> schemas.ModelStatus:
    store = services.store
    downloaded = store.model_ids()
    current = services.state.active_model
    if not downloaded:
        message = "No models downloaded yet. POST /api/download-model?model_id=...&auto=true"
    elif current is None:
        message = f"{len(downloaded)} model(s) downloaded; none is active."
    else:
        message = f"{len(downloaded)} model(s) downloaded; active: {current}."
    return schemas.ModelStatus(
        models_available=bool(downloaded),
        models_dir_exists=store.models_dir.is_dir(),
        models_dir=str(store.models_dir),
        downloaded_models=downloaded,
        current_model=current,
        vllm_healthy=services.engine.model is not None,
        message=message,
    )


@router.get("/models/local", response_model=schemas.LocalModels)
def models_local(store: StoreDep) -> dict[str, Any]:
    models = store.list()
    return {
        "models": [_model_json(m) for m in models],
        "count": len(models),
        "total_size_bytes": sum(m.size_bytes for m in models),
    }


def _model_json(model: LocalModel) -> dict[str, Any]:
    """`asdict` without its deep copy: every value is already JSON-ready."""
    return vars(model) | {
        "revisions": [dict(vars(rev)) for rev in model.revisions],
        "size_mb": model.size_mb,
    }


@router.delete("/delete-model", response_model=schemas.Deleted)
def delete_model(
    services: ServicesDep,
    model_id: str = ModelIdQuery,
    force: bool = Query(False, description="Delete even if it is the active model"),
) -> schemas.Deleted:
    model_id = resolve_model_id(model_id)  # a pasted Hub URL names its repo
    deleted = services.delete_model(model_id, force=force)
    message = f"Successfully deleted {model_id} ({deleted.size_mb} MB freed)"
    if deleted.was_active:
        message += "; it was the active model, so no model is active now"
    return schemas.Deleted(
        status="deleted",
        model_id=model_id,
        size_mb=deleted.size_mb,
        size_bytes=deleted.size_bytes,
        message=message,
    )
