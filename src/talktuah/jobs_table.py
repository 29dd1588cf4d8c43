"""Download jobs as rows in SQLite, so a crash or a restart loses none of them."""

from __future__ import annotations

import json
import sqlite3
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from .errors import JobNotFoundError
from .state import StateDB


class JobStatus(StrEnum):
    QUEUED = "queued"
    DOWNLOADING = "downloading"
    COMPLETE = "complete"
    ERROR = "error"
    CANCELLED = "cancelled"

    @property
    def live(self) -> bool:
        return self in (JobStatus.QUEUED, JobStatus.DOWNLOADING)


@dataclass(frozen=True)
class PlannedFile:
    """One file a job must produce, with what the Hub told us it should be."""

    path: str
    size: int
    sha256: str | None  # LFS files only
    git_sha1: str | None = None  # regular files: the git blob id (sha1 of "blob <size>\0" + bytes)


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


@dataclass
class DownloadJob:
    id: str
    model_id: str
    revision: str
    status: JobStatus
    created_at: str
    updated_at: str
    commit_hash: str | None = None
    allow_patterns: list[str] | None = None
    ignore_patterns: list[str] | None = None
    bytes_done: int = 0
    bytes_total: int | None = None
    files_done: int = 0
    files_total: int | None = None
    files: list[PlannedFile] = field(default_factory=list)
    verified: list[str] = field(default_factory=list)
    speed_bps: float | None = None
    eta_seconds: float | None = None
    activate: bool = False
    callback_url: str | None = None
    error: str | None = None
    attempts: int = 0
    started_at: str | None = None
    completed_at: str | None = None
    detailed: bool = field(default=True, compare=False, repr=False)
    """False for a job read without its file lists (listings): `files`/`verified` are empty
    then, and `JobStore.save` leaves the stored lists alone."""

    @property
    def progress(self) -> int:
        """Percent from bytes; 100 only once the job is complete (verification included)."""
        if self.status == JobStatus.COMPLETE:
            return 100
        if not self.bytes_total:
            return 0
        return min(99, self.bytes_done * 100 // self.bytes_total)

    def to_api(self, *, reveal_callback: bool = True) -> dict[str, Any]:
        """The job as clients see it: the seed's progress fields plus ours.

        A webhook URL often is its own secret (n8n's are), so readers who may not start
        downloads see only its origin, without any `user:password@`.
        """
        callback = self.callback_url
        if callback and not reveal_callback:
            parts = urlsplit(callback)
            callback = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}/…"
        return {
            "job_id": self.id,
            "status": str(self.status),
            "progress": self.progress,
            "model": self.model_id,
            "model_id": self.model_id,
            "revision": self.revision,
            "commit_hash": self.commit_hash,
            "error": self.error,
            "bytes_done": self.bytes_done,
            "bytes_total": self.bytes_total,
            "files_done": self.files_done,
            "files_total": self.files_total,
            "speed_bps": round(self.speed_bps, 1) if self.speed_bps is not None else None,
            "eta_seconds": round(self.eta_seconds, 1) if self.eta_seconds is not None else None,
            "allow_patterns": self.allow_patterns,
            "ignore_patterns": self.ignore_patterns,
            "activate": self.activate,
            "callback_url": callback,
            "attempts": self.attempts,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "updated_at": self.updated_at,
            "completed_at": self.completed_at,
        }


_JSON_COLUMNS = ("allow_patterns", "ignore_patterns", "files", "verified")
_COLUMNS = (
    "id", "model_id", "revision", "commit_hash", "allow_patterns", "ignore_patterns", "status",
    "bytes_done", "bytes_total", "files_done", "files_total", "files", "verified", "speed_bps",
    "eta_seconds", "activate", "callback_url", "error", "attempts", "created_at", "started_at",
    "updated_at", "completed_at",
)  # fmt: skip


# Listings read these: every column but the file lists, which a 50,000-file repo makes
# megabytes long (decoding them on every poll made /api/model-status take seconds).
_SUMMARY = ", ".join(c for c in _COLUMNS if c not in ("files", "verified"))
# Progress ticks write these: the planned list never changes after insert, and the verified
# list changes only when a file is verified (JobStore.save).
_PROGRESS_COLUMNS = (
    "status", "bytes_done", "bytes_total", "files_done", "files_total", "speed_bps",
    "eta_seconds", "error", "attempts", "started_at", "completed_at", "updated_at",
)  # fmt: skip


def _to_row(job: DownloadJob) -> dict[str, Any]:
    row = asdict(job)
    row.pop("detailed")
    row["status"] = str(job.status)
    row["activate"] = int(job.activate)
    for column in _JSON_COLUMNS:
        row[column] = json.dumps(row[column]) if row[column] is not None else None
    return row


def _from_row(row: sqlite3.Row) -> DownloadJob:
    data = {key: row[key] for key in row.keys()}
    detailed = "files" in data
    for column in _JSON_COLUMNS:
        if column in data:
            data[column] = json.loads(data[column]) if data[column] is not None else None
    data["files"] = [PlannedFile(**f) for f in data.get("files") or []]
    data["verified"] = data.get("verified") or []
    data["status"] = JobStatus(data["status"])
    data["activate"] = bool(data["activate"])
    return DownloadJob(**data, detailed=detailed)


class LiveJobExists(Exception):
    """Raised by `JobStore.insert` when the model already has a queued or running job."""

    def __init__(self, job: DownloadJob) -> None:
        super().__init__(job.id)
        self.job = job


class JobStore:
    def __init__(self, state: StateDB) -> None:
        self.state = state

    def new(
        self,
        model_id: str,
        revision: str,
        *,
        allow_patterns: list[str] | None = None,
        ignore_patterns: list[str] | None = None,
        activate: bool = False,
        callback_url: str | None = None,
    ) -> DownloadJob:
        stamp = now_iso()
        return DownloadJob(
            id=uuid.uuid4().hex[:12],
            model_id=model_id,
            revision=revision,
            status=JobStatus.QUEUED,
            created_at=stamp,
            updated_at=stamp,
            allow_patterns=allow_patterns,
            ignore_patterns=ignore_patterns,
            activate=activate,
            callback_url=callback_url,
        )

    def insert(self, job: DownloadJob) -> DownloadJob:
        """Store a new job, or raise LiveJobExists with the job already running for the model."""
        row = _to_row(job)
        placeholders = ", ".join(f":{c}" for c in _COLUMNS)
        try:
            self.state.execute(
                f"INSERT INTO download_jobs ({', '.join(_COLUMNS)}) VALUES ({placeholders})",
                row,
            )
        except sqlite3.IntegrityError:
            live = self.live_for(job.model_id)
            if live is None:  # it finished between our insert and this read: try again
                return self.insert(job)
            raise LiveJobExists(live) from None
        return job

    def save(self, job: DownloadJob) -> None:
        """Write the job's state and its verified list; the planned list is never rewritten
        (it is fixed at insert)."""
        columns = (*_PROGRESS_COLUMNS, "verified") if job.detailed else _PROGRESS_COLUMNS
        self._update(job, columns)

    def save_progress(self, job: DownloadJob) -> None:
        """Write what a progress tick changes: bytes, speed, status; no file list."""
        self._update(job, _PROGRESS_COLUMNS)

    def _update(self, job: DownloadJob, columns: tuple[str, ...]) -> None:
        job.updated_at = now_iso()
        row = _to_row(job)
        assignments = ", ".join(f"{c} = :{c}" for c in columns)
        self.state.execute(
            f"UPDATE download_jobs SET {assignments} WHERE id = :id",
            {c: row[c] for c in (*columns, "id")},
        )

    def get(self, job_id: str, *, detail: bool = True) -> DownloadJob:
        """One job; `detail=False` skips its file lists (for pollers and listings)."""
        rows = self.state.query(
            f"SELECT {'*' if detail else _SUMMARY} FROM download_jobs WHERE id = ?", (job_id,)
        )
        if not rows:
            raise JobNotFoundError(
                f"No download job {job_id!r}. GET /api/downloads lists the known jobs.",
                job_id=job_id,
            )
        return _from_row(rows[0])

    def live_for(self, model_id: str) -> DownloadJob | None:
        rows = self.state.query(
            f"SELECT {_SUMMARY} FROM download_jobs "
            "WHERE model_id = ? AND status IN ('queued', 'downloading')",
            (model_id,),
        )
        return _from_row(rows[0]) if rows else None

    def latest_for(self, model_id: str, *, any_quant: bool = False) -> DownloadJob | None:
        """The model's newest job; `any_quant`: also its quants' (`org/repo:Q8_0` jobs for
        `org/repo`: a GGUF repo asked for without a tag gets the tag of the quant chosen)."""
        where = "model_id = ?"
        params: tuple[str, ...] = (model_id,)
        if any_quant:
            # Ids that start with "org/repo:" sort between it and "org/repo;" (':' + 1).
            where = "(model_id = ? OR (model_id > ? AND model_id < ?))"
            params = (model_id, f"{model_id}:", f"{model_id};")
        rows = self.state.query(
            f"SELECT {_SUMMARY} FROM download_jobs WHERE {where} "
            "ORDER BY created_at DESC, rowid DESC "
            "LIMIT 1",
            params,
        )
        return _from_row(rows[0]) if rows else None

    def latest(self) -> DownloadJob | None:
        rows = self.state.query(
            f"SELECT {_SUMMARY} FROM download_jobs ORDER BY created_at DESC, rowid DESC LIMIT 1"
        )
        return _from_row(rows[0]) if rows else None

    def recent(self, limit: int = 100) -> list[DownloadJob]:
        """The newest jobs, without their file lists."""
        rows = self.state.query(
            f"SELECT {_SUMMARY} FROM download_jobs ORDER BY created_at DESC, rowid DESC LIMIT ?",
            (limit,),
        )
        return [_from_row(r) for r in rows]

    def model_ids(self) -> set[str]:
        rows = self.state.query("SELECT DISTINCT model_id FROM download_jobs")
        return {row["model_id"] for row in rows}

    def live_model_ids(self) -> set[str]:
        rows = self.state.query(
            "SELECT model_id FROM download_jobs WHERE status IN ('queued', 'downloading')"
        )
        return {row["model_id"] for row in rows}

    def targeted_revisions(self) -> set[tuple[str, str]]:
        """(model, commit) pairs some job of ours planned: revisions that are ours to vouch
        for (a snapshot we never planned came from another tool)."""
        rows = self.state.query(
            "SELECT DISTINCT model_id, commit_hash FROM download_jobs WHERE commit_hash IS NOT NULL"
        )
        return {(row["model_id"], row["commit_hash"]) for row in rows}

    def prune(self, keep: int) -> int:
        """Forget all but the newest `keep` finished jobs; live jobs are always kept."""
        return self.state.execute(
            "DELETE FROM download_jobs WHERE status NOT IN ('queued', 'downloading') "
            "AND rowid NOT IN (SELECT rowid FROM download_jobs "
            "WHERE status NOT IN ('queued', 'downloading') "
            "ORDER BY created_at DESC, rowid DESC LIMIT ?)",
            (keep,),
        )

    def counts(self) -> dict[str, int]:
        rows = self.state.query("SELECT status, count(*) AS n FROM download_jobs GROUP BY status")
        return {row["status"]: int(row["n"]) for row in rows}

    def current_speed(self) -> float:
        rows = self.state.query(
            "SELECT coalesce(sum(speed_bps), 0) AS bps FROM download_jobs "
            "WHERE status = 'downloading'"
        )
        return float(rows[0]["bps"])

    def unfinished(self) -> list[DownloadJob]:
        """Jobs a previous process left queued or running, oldest first."""
        rows = self.state.query(
            "SELECT * FROM download_jobs WHERE status IN ('queued', 'downloading') "
            "ORDER BY created_at, rowid"
        )
        return [_from_row(r) for r in rows]
