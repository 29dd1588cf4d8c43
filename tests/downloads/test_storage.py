"""Reclaiming disk (storage.py): gc removes exactly the orphans and reports what left the disk.

Why (issue 19): every tool we compete with leaks partial files and orphan blobs nobody can see
(Ollama #18595: 21 GB). The danger on the other side is worse: a gc that removes a live
download's partial, a file being written or a blob a snapshot links to. Each is planted here
next to a real downloaded model and must survive; the bytes reported must equal what the
models dir lost.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from fastapi.testclient import TestClient

from talktuah.config import Settings
from talktuah.downloads.manager import DownloadRequest
from talktuah.downloads.transfer import WriterLock
from talktuah.services import Services
from talktuah.storage import LiveDownloads, collect, report

from ..support.downloads import WaitFor
from ..support.hub import Hub, make_files

OLD = time.time() - 10 * 86400


def disk_bytes(root: Path) -> int:
    return sum(p.lstat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def plant(path: Path, size: int, *, old: bool = True) -> Path:
    path.write_bytes(os.urandom(size))
    if old:
        os.utime(path, (OLD, OLD))
    return path


def test_gc_removes_exactly_the_orphans(
    services: Services, hub: Hub, client: TestClient, wait_for: WaitFor
) -> None:
    hub.add_repo("org/kept", make_files(n_files=2, size=50_000, seed=3))
    job = client.post("/api/download-model", params={"model_id": "org/kept", "auto": "true"})
    assert wait_for(job.json()["job_id"])["status"] == "complete"
    models = services.store.models_dir
    repo = models / "models--org--kept"
    blobs = repo / "blobs"
    linked = sorted(p for p in blobs.iterdir())
    a, b, c, d, e = ("a" * 64, "b" * 64, "c" * 64, "d" * 64, "e" * 64)

    doomed = [
        plant(blobs / f"{a}.talktuah-partial", 3000),  # an ended job's, past the grace
        plant(blobs / f"{a}.talktuah-partial.json", 100),
        plant(blobs / f"{b}.1234abcd.incomplete", 2000),  # the library's, from a dead process
        plant(blobs / f"{c}.talktuah-lock", 0),  # stale: nobody holds it
        plant(blobs / d, 5000),  # a blob no snapshot links to
    ]
    live = plant(blobs / f"{e}.talktuah-partial", 4000)  # a live job's
    young = plant(blobs / f"{'f' * 64}.talktuah-partial", 1000, old=False)  # inside the grace
    written = plant(blobs / f"{'9' * 64}.talktuah-partial", 1500)  # its writer holds the lock
    writer = WriterLock(blobs / f"{'9' * 64}.talktuah-lock")
    assert writer.try_acquire()
    being_moved = plant(blobs / ("8" * 64), 700)  # unlinked yet, its writer holds the lock
    mover = WriterLock(blobs / f"{'8' * 64}.talktuah-lock")
    assert mover.try_acquire()
    try:
        before = disk_bytes(models)
        done = collect(
            models,
            live=LiveDownloads(blobs=frozenset({(repo.name, e)})),
            grace=3600,
            ours={repo.name},
        )
        after = disk_bytes(models)
    finally:
        writer.release()
        mover.release()
    assert sorted(r.path for r in done.removed) == sorted(str(p) for p in doomed)
    assert done.bytes_reclaimed == before - after == 3000 + 100 + 2000 + 0 + 5000
    for kept in (live, young, written, being_moved, *linked):
        assert kept.exists(), kept
    (model,) = services.store.list()
    assert model.complete  # every linked blob is still there


def test_storage_report_and_the_api(
    services: Services, hub: Hub, client: TestClient, wait_for: WaitFor, settings: Settings
) -> None:
    files = make_files(n_files=1, size=80_000, seed=4)
    hub.add_repo("org/sized", files)
    job = client.post("/api/download-model", params={"model_id": "org/sized", "auto": "true"})
    assert wait_for(job.json()["job_id"])["status"] == "complete"
    blobs = settings.models_dir / "models--org--sized" / "blobs"
    plant(blobs / f"{'a' * 64}.talktuah-partial", 3000)

    shown = client.get("/api/storage")
    assert shown.status_code == 200, shown.text
    body = shown.json()
    assert body["models"] == [{"model_id": "org/sized", "bytes": sum(map(len, files.values()))}]
    assert body["partial_bytes"] == 3000 and body["partials"][0]["live"] is False
    assert body["free_bytes"] > 0 and body["total_bytes"] >= sum(map(len, files.values())) + 3000
    direct = report(settings.models_dir, live=LiveDownloads())
    assert direct.total_bytes == body["total_bytes"]

    reclaimed = client.post("/api/storage/gc")
    assert reclaimed.status_code == 200, reclaimed.text
    assert reclaimed.json()["bytes_reclaimed"] == 3000
    assert client.get("/api/storage").json()["partials"] == []


def test_a_partial_of_a_queued_job_survives_gc_at_start(
    settings: Settings, hub: Hub, services: Services
) -> None:
    """At start, jobs left queued are live: their partials are what they resume from."""
    files = make_files(n_files=1, size=200_000, seed=5)
    hub.add_repo("org/queued", files)
    hub.faults.down = False
    outcome = services.downloads.request(DownloadRequest("org/queued"))
    assert outcome.job is not None
    etag = outcome.job.files[-1].sha256 or outcome.job.files[-1].git_sha1
    blobs = settings.models_dir / "models--org--queued" / "blobs"
    blobs.mkdir(parents=True, exist_ok=True)
    partial = plant(blobs / f"{etag}.talktuah-partial", 1000)
    services.downloads.collect_garbage()
    assert partial.exists()
