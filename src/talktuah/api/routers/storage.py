"""The models dir's disk use, and reclaiming what no download will use again (storage.py)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool

from .. import schemas
from ..deps import DownloadsDep

router = APIRouter(prefix="/api/storage", tags=["storage"])


@router.get("", response_model=schemas.StorageReport)
async def storage_report(downloads: DownloadsDep) -> schemas.StorageReport:
    """Bytes of the models dir in total (each file once), per model (a blob shared by two
    revisions counted once), in partial downloads (each marked live or not), and the disk's
    free space. `talktuah du` prints it."""
    found = await run_in_threadpool(downloads.storage_report)
    return schemas.StorageReport.model_validate(found.to_api())


@router.post("/gc", response_model=schemas.GarbageCollected)
async def storage_gc(downloads: DownloadsDep) -> schemas.GarbageCollected:
    """Remove partials of downloads that are not running and are older than
    TALKTUAH_PARTIAL_GRACE, the library's leftover `.incomplete` files, stale locks and blobs
    no snapshot links to; answers what went and the bytes reclaimed. A live download's
    partial, a file being written and a linked blob are never touched. `talktuah gc`."""
    done = await run_in_threadpool(downloads.collect_garbage)
    return schemas.GarbageCollected.model_validate(done.to_api())
