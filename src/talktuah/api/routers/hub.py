"""What the Hub has, before anything is pulled: a GGUF repo's quants with their sizes."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool

from ...model_ref import resolve_model_and_revision
from ...quants import with_tag
from ...store import repo_of
from .. import params, schemas
from ..deps import ServicesDep

router = APIRouter(prefix="/api/hub", tags=["hub"])


@router.get("/quants", response_model=schemas.HubQuants)
async def hub_quants(
    services: ServicesDep,
    model_id: Annotated[str, Query(description="Hugging Face repo id, e.g. org/name-GGUF")],
    revision: Annotated[str, Query(description="Branch, tag or commit sha")] = "main",
) -> schemas.HubQuants:
    """The repo's GGUF quants (smallest first) with sizes, which one a pull without a tag
    fetches, and which are downloaded: the dashboard's pull form lists them. A repo with no
    GGUF model file answers `format: safetensors` and no quants (a pull fetches it whole)."""
    revision = params.plain_text("revision", revision, params.MAX_REVISION_LENGTH)
    model_id, revision = resolve_model_and_revision(model_id, revision)  # a Hub URL too
    repo_id = repo_of(model_id)
    found, here = await run_in_threadpool(services.hub_quants, repo_id, revision)
    quants = sorted(found.quants, key=lambda q: (q.size is None, q.size or 0))
    return schemas.HubQuants(
        model_id=repo_id,
        revision=revision,
        commit_hash=found.commit_hash,
        format="gguf" if found.gguf else "safetensors",
        default=found.default if found.gguf else None,
        mmproj=found.mmproj,
        quants=[
            schemas.HubQuant(
                tag=q.tag,
                model_id=with_tag(repo_id, q.tag),
                size_bytes=q.size,
                files=list(q.files),
                default=found.gguf and q.tag == found.default,
                downloaded=with_tag(repo_id, q.tag) in here,
            )
            for q in quants
        ],
    )
