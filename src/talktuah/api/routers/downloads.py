"""Download requests, progress (polled or streamed as SSE), listing and cancellation."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.background import BackgroundTask

from ...downloads.instructions import manual_instructions
from ...downloads.jobs import DownloadJob, JobStatus
from ...downloads.manager import DownloadRequest
from ...engine.supervisor import SwitchOutcome
from ...keys import Principal, Scope
from ...model_id import ModelId
from ...model_ref import resolve_model_and_revision
from ...store import repo_of
from .. import params, schemas
from ..auth import PrincipalDep
from ..deps import DownloadsDep, ServicesDep

router = APIRouter(prefix="/api", tags=["downloads"])


def _idle() -> dict[str, Any]:
    """The answer when there is no job: every key a job has, so clients parse one shape."""
    blank = DownloadJob(id="", model_id="", revision="", status=JobStatus.QUEUED,
                        created_at="", updated_at="").to_api()  # fmt: skip
    return {key: None for key in blank} | {
        "status": "idle",
        "progress": 0,
        "bytes_done": 0,
        "files_done": 0,
        "activate": False,
        "attempts": 0,
    }


EVENT_POLL_SECONDS = 0.05


def _patterns(values: list[str] | None) -> list[str] | None:
    """Accept `?allow_patterns=a&allow_patterns=b` and `?allow_patterns=a,b` (n8n style)."""
    if not values:
        return None
    parts = [p.strip() for value in values for p in value.split(",") if p.strip()]
    return parts or None


@router.post(
    "/download-model",
    response_model=schemas.Instructions | schemas.AlreadyDownloaded | schemas.JobMessage,
    response_model_exclude_unset=True,
)
def download_model(
    request: Request,
    response: Response,
    services: ServicesDep,
    model_id: Annotated[
        str,
        Query(
            description="Hugging Face repo id, e.g. org/name; one quant of a GGUF repo as "
            "org/name:Q4_K_M (without a tag: Q4_K_M, then Q8_0, then the first model file)"
        ),
    ],
    auto: Annotated[bool, Query(description="Download now, or return instructions")] = False,
    revision: Annotated[str, Query(description="Branch, tag or commit sha")] = "main",
    allow_patterns: Annotated[list[str] | None, Query(description="Globs to fetch")] = None,
    ignore_patterns: Annotated[list[str] | None, Query(description="Globs to skip")] = None,
    activate: Annotated[bool, Query(description="Make it active when complete")] = False,
    callback_url: Annotated[str | None, Query(description="Gets the final job JSON")] = None,
    force: Annotated[
        bool, Query(description="Download a GGUF model even if it does not fit in RAM")
    ] = False,
) -> dict[str, Any] | schemas.AlreadyDownloaded | schemas.JobMessage:
    model_id, revision = resolve_model_and_revision(model_id, revision)  # a pasted Hub URL too
    if not auto:
        base_url = str(request.base_url).rstrip("/")
        return manual_instructions(model_id, str(services.settings.models_dir), base_url)
    outcome, switched = services.download(
        DownloadRequest(
            model_id=model_id,
            revision=params.plain_text("revision", revision, params.MAX_REVISION_LENGTH),
            allow_patterns=params.patterns("allow_patterns", _patterns(allow_patterns)),
            ignore_patterns=params.patterns("ignore_patterns", _patterns(ignore_patterns)),
            activate=activate,
            callback_url=callback_url,
            force=force,
        )
    )
    model_id = outcome.model_id or model_id  # `org/repo` of a GGUF repo: the quant chosen
    if outcome.already_complete:
        if switched is None:
            message = f"{model_id} is already downloaded; nothing to do."
        elif switched == SwitchOutcome.ALREADY_SERVING:
            message = f"{model_id} is already downloaded and serving; nothing to do."
        else:
            message = f"{model_id} is already downloaded; switching to it."
        return schemas.AlreadyDownloaded(
            status="complete",
            message=message,
            model_id=model_id,
            job_id=None,
            info="GET /api/models/local lists it; GET /api/model-loading-status shows the switch.",
        )
    job = outcome.job
    assert job is not None
    progress_url = f"/api/download-progress?job_id={job.id}"
    if outcome.created:
        response.status_code = status.HTTP_202_ACCEPTED
        message = f"Download queued for {model_id}"
    else:
        message = f"{model_id} is already being downloaded (job {job.id})"
    return schemas.JobMessage(
        **job.to_api(),
        message=message,
        info=f"Poll {progress_url} or stream /api/downloads/{job.id}/events.",
    )


def _reveal(principal: Principal) -> bool:
    return principal.allows(Scope.MODELS_WRITE)


@router.get("/download-progress", response_model=schemas.Job)
def download_progress(
    downloads: DownloadsDep,
    principal: PrincipalDep,
    job_id: str | None = Query(None),
    model_id: str | None = Query(None),
) -> dict[str, Any]:
    """One job's progress; without an id, the most recent job (the seed's single slot)."""
    jobs = downloads.jobs
    job: DownloadJob | None
    if job_id is not None:
        job = jobs.get(job_id, detail=False)
    elif model_id is not None:
        model_id = ModelId(model_id)
        job = jobs.latest_for(model_id, any_quant=model_id == repo_of(model_id))
    else:
        job = jobs.latest()
    return job.to_api(reveal_callback=_reveal(principal)) if job is not None else _idle()


@router.get("/downloads", response_model=schemas.Downloads)
def list_downloads(
    downloads: DownloadsDep, principal: PrincipalDep, limit: int = Query(100, ge=1, le=1000)
) -> dict[str, Any]:
    jobs = downloads.jobs.recent(limit=limit)
    reveal = _reveal(principal)
    return {"downloads": [j.to_api(reveal_callback=reveal) for j in jobs], "count": len(jobs)}


@router.get("/downloads/{job_id}", response_model=schemas.Job)
def get_download(downloads: DownloadsDep, principal: PrincipalDep, job_id: str) -> dict[str, Any]:
    return downloads.get(job_id).to_api(reveal_callback=_reveal(principal))


@router.delete(
    "/downloads/{job_id}", response_model=schemas.JobMessage, response_model_exclude_unset=True
)
def cancel_download(downloads: DownloadsDep, job_id: str) -> schemas.JobMessage:
    job = downloads.cancel(job_id)
    if job.status.live:
        message = "Cancelling; the transfer stops within seconds."
    else:
        message = f"Job {job.id} is {job.status}."
    return schemas.JobMessage(**job.to_api(), message=message)


@router.get("/downloads/{job_id}/events")
async def download_events(
    request: Request, services: ServicesDep, principal: PrincipalDep, job_id: str
) -> EventSourceResponse:
    """Server-sent events: one `progress` event per change, closed when the job ends.

    Each stream holds a connection for as long as the job runs, so it takes one of the key's
    stream slots, as a streamed chat answer does (429 with Retry-After when none is left);
    the slot comes back when the stream ends or the client leaves.
    """
    first = await run_in_threadpool(services.downloads.get, job_id)
    release = services.limits.open_stream(principal)

    async def events() -> AsyncIterator[ServerSentEvent]:
        try:
            job = first
            last: tuple[Any, ...] | None = None
            while True:
                key = (job.status, job.bytes_done, job.files_done, job.error)
                if key != last:
                    last = key
                    body = job.to_api(reveal_callback=_reveal(principal))
                    yield ServerSentEvent(data=json.dumps(body), event="progress")
                if not job.status.live or await request.is_disconnected():
                    return
                await asyncio.sleep(EVENT_POLL_SECONDS)
                job = await run_in_threadpool(services.downloads.get, job_id)
        finally:
            release()

    # The background task covers a stream cancelled before its first event (a generator
    # never started runs no `finally`); release() is idempotent.
    return EventSourceResponse(events(), ping=15, background=BackgroundTask(release))
