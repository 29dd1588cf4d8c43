"""What is verified on disk decides completeness (verified.py), and listings stay cheap.

Why: a queued pattern-filtered re-download that was cancelled, or failed because the Hub was
down, made the active model "incomplete" (completeness came from the model's *latest* job),
which blocked switching to it and stopped it loading after a restart. And every listing
(`/metrics` is public) decoded every job's planned-file list: a 50,000-file repo made
`/api/model-status` take seconds for everyone.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from talktuah.downloads.jobs import JobStatus, JobStore, PlannedFile
from talktuah.services import Services
from talktuah.state import StateDB
from talktuah.verified import VerifiedRevisions

from ..support.downloads import WaitFor, start_download
from ..support.hub import Hub, make_files

MODEL = "org/keep"


def complete(client: TestClient, model_id: str) -> bool:
    models = client.get("/api/models/local").json()["models"]
    return bool(next(m for m in models if m["model_id"] == model_id)["complete"])


def test_failed_or_cancelled_redownload_keeps_the_model_complete(
    client: TestClient, services: Services, hub: Hub, wait_for: WaitFor
) -> None:
    files = make_files(n_files=2, size=32 * 1024, seed=5) | {"extra.bin": b"x" * 200_000}
    hub.add_repo(MODEL, files)
    first = start_download(client, MODEL, ignore_patterns="extra.bin")
    assert wait_for(first["job_id"])["status"] == "complete"
    assert complete(client, MODEL)

    # The same commit, one more file; the Hub fails every transfer of it: the job errors.
    hub.faults.fail_next(1000, 503, "*extra.bin")
    failed = start_download(client, MODEL, allow_patterns="extra.bin")
    assert wait_for(failed["job_id"])["status"] == "error"
    assert complete(client, MODEL)
    assert services.store.get(MODEL).complete  # what a switch checks

    # Again, cancelled while its bytes trickle in.
    hub.faults.clear()
    hub.faults.throttle_bps = 20_000
    cancelled = start_download(client, MODEL, allow_patterns="extra.bin")
    wait_for(cancelled["job_id"], lambda j: j["bytes_done"] > 0)
    client.delete(f"/api/downloads/{cancelled['job_id']}")
    assert wait_for(cancelled["job_id"])["status"] == "cancelled"
    assert complete(client, MODEL)
    assert services.store.get(MODEL).complete


def test_a_missing_verified_file_makes_the_revision_incomplete(
    client: TestClient, services: Services, hub: Hub, wait_for: WaitFor
) -> None:
    hub.add_repo(MODEL, make_files(n_files=2, size=8 * 1024, seed=6))
    job = start_download(client, MODEL)
    assert wait_for(job["job_id"])["status"] == "complete"
    snapshot = Path(services.store.get(MODEL).path) / "snapshots" / job["commit_hash"]
    (snapshot / "config.json").unlink()
    services.store.scans.invalidate()
    assert not complete(client, MODEL)


@pytest.fixture
def traced(services: Services) -> Iterator[list[str]]:
    """Every SQL statement the state DB runs while the test body runs."""
    statements: list[str] = []
    services.state._db.set_trace_callback(statements.append)
    yield statements
    services.state._db.set_trace_callback(None)


def _reads_file_lists(sql: str) -> bool:
    return "download_jobs" in sql and (
        "SELECT *" in sql or re.search(r"\bfiles\b", sql.split("FROM")[0]) is not None
    )


def test_listings_never_decode_a_jobs_file_list(
    client: TestClient, services: Services, hub: Hub, traced: list[str]
) -> None:
    """A 10,000-file job in history: no listing reads its file list (bench/listings.py times
    the same with 1,000 cached models)."""
    jobs = services.downloads.jobs
    big = jobs.new("org/huge", "main")
    big.commit_hash = "b" * 40
    big.files = [PlannedFile(f"shard-{i:05d}.bin", 1, "0" * 64) for i in range(10_000)]
    big.status = JobStatus.COMPLETE
    jobs.insert(big)
    traced.clear()
    for path in ("/api/model-status", "/api/models/local", "/api/downloads",
                 "/api/download-progress", f"/api/downloads/{big.id}"):  # fmt: skip
        assert client.get(path).status_code == 200, path
    assert client.get("/metrics").status_code == 200
    readers = [sql for sql in traced if _reads_file_lists(sql)]
    assert readers == [], readers
    assert any("download_jobs" in sql for sql in traced), "the trace saw nothing: broken test"


def test_progress_ticks_do_not_rewrite_the_planned_file_list(
    client: TestClient, hub: Hub, wait_for: WaitFor, traced: list[str]
) -> None:
    hub.add_repo(MODEL, make_files(n_files=2, size=128 * 1024, seed=8))
    hub.faults.throttle_bps = 400_000
    job = start_download(client, MODEL)
    assert wait_for(job["job_id"])["status"] == "complete"
    updates = [sql for sql in traced if sql.startswith("UPDATE download_jobs")]
    assert len(updates) >= 3, updates
    assert not any(re.search(r"\bfiles =", sql) for sql in updates), updates


def test_finished_jobs_are_pruned_to_the_retention_limit(services: Services) -> None:
    jobs = services.downloads.jobs
    for n in range(5):
        job = jobs.new(f"org/m{n}", "main")
        job.status = JobStatus.COMPLETE
        jobs.insert(job)  # same created_at or not: the later row is the newer
    live = jobs.insert(jobs.new("org/live", "main"))
    assert jobs.prune(2) == 3
    kept = {j.model_id for j in jobs.recent()}
    assert kept == {"org/m4", "org/m3", "org/live"}
    assert jobs.get(live.id).status == JobStatus.QUEUED


def test_upgrade_backfills_what_complete_jobs_verified(tmp_path: Path) -> None:
    """A state.db from before verified_revisions: its complete jobs become the record."""
    path = tmp_path / "state.db"
    state = StateDB(path)
    jobs = JobStore(state)
    job = jobs.new(MODEL, "main")
    job.commit_hash = "c" * 40
    job.files = [PlannedFile("config.json", 2, None), PlannedFile("w.safetensors", 3, "0" * 64)]
    job.status = JobStatus.COMPLETE
    jobs.insert(job)
    state.close()
    db = sqlite3.connect(path)
    db.execute("DROP TABLE verified_revisions")
    db.execute("PRAGMA user_version = 3")
    db.commit()
    db.close()
    upgraded = StateDB(path)
    assert VerifiedRevisions(upgraded).all() == {
        (MODEL, "c" * 40): frozenset({"config.json", "w.safetensors"})
    }
    upgraded.close()
