"""What the models dir holds, and reclaiming what nothing will use again.

Every tool we compete with leaks disk here (Ollama #18595: a 21 GB orphan blob nobody could
see): partials of downloads nobody resumes, the library's process-unique `.incomplete` files
left by a killed process, lock files, and blobs no snapshot points at any more. `collect()`
removes exactly those, and `report()` shows where the bytes are.

What is never touched, whatever its age:
- a partial of a live job (queued or downloading), or one whose writer lock is held (a
  transfer in this or another process is writing it);
- a library `.incomplete` whose library lock (`.locks/<repo>/<etag>.lock`) is held;
- a blob some snapshot links to, or one whose lock (ours or the library's) is held: both
  writers move a blob in and link it while holding their lock;
- anything that resolves outside the models dir (confine.py).

Bytes are counted as what leaves the disk: a file's size when its last link goes, nothing
for a symlink or a file with other hard links.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from huggingface_hub import scan_cache_dir

from .confine import inside
from .downloads.jobs import DownloadJob
from .downloads.transfer import LOCK_SUFFIX, META_SUFFIX, PARTIAL_SUFFIX, WriterLock, lock_is_held

logger = logging.getLogger(__name__)

_LIBRARY_PARTIAL = ".incomplete"
_REPO_PREFIXES = ("models--", "datasets--", "spaces--")


@dataclass(frozen=True)
class LiveDownloads:
    """What running or queued jobs will write: their blobs, and repos whose blob names are
    not all known yet (a hub that lists no blob ids): every partial there counts as live."""

    blobs: frozenset[tuple[str, str]] = frozenset()  # (repo folder, etag)
    repos: frozenset[str] = frozenset()

    def covers(self, repo_folder: str, etag: str) -> bool:
        return repo_folder in self.repos or (repo_folder, etag) in self.blobs

    @staticmethod
    def of(jobs: Iterable[DownloadJob]) -> LiveDownloads:
        blobs: set[tuple[str, str]] = set()
        repos: set[str] = set()
        for job in jobs:
            folder = repo_folder(job.model_id.partition(":")[0])
            for planned in job.files:
                etag = planned.sha256 or planned.git_sha1
                if etag is None:
                    repos.add(folder)
                else:
                    blobs.add((folder, etag))
        return LiveDownloads(frozenset(blobs), frozenset(repos))


def repo_folder(repo_id: str) -> str:
    return "models--" + repo_id.replace("/", "--")


def model_id_of(folder: str) -> str:
    return folder.partition("--")[2].replace("--", "/")


@dataclass(frozen=True)
class Removed:
    path: str
    kind: str  # partial | library_partial | lock | blob
    bytes: int


@dataclass(frozen=True)
class GcReport:
    removed: list[Removed] = field(default_factory=list)

    @property
    def bytes_reclaimed(self) -> int:
        return sum(r.bytes for r in self.removed)

    def to_api(self) -> dict[str, object]:
        return {
            "bytes_reclaimed": self.bytes_reclaimed,
            "files_removed": len(self.removed),
            "removed": [r.__dict__ for r in self.removed],
        }


@dataclass(frozen=True)
class PartialFile:
    model_id: str
    path: str
    bytes: int
    age_seconds: float
    kind: str  # partial (resumable) | library_partial
    live: bool


@dataclass(frozen=True)
class StorageReport:
    models_dir: str
    total_bytes: int
    free_bytes: int
    models: dict[str, int]
    partials: list[PartialFile]

    @property
    def partial_bytes(self) -> int:
        return sum(p.bytes for p in self.partials)

    def to_api(self) -> dict[str, object]:
        return {
            "models_dir": self.models_dir,
            "total_bytes": self.total_bytes,
            "free_bytes": self.free_bytes,
            "partial_bytes": self.partial_bytes,
            "models": [
                {"model_id": model_id, "bytes": size}
                for model_id, size in sorted(self.models.items())
            ],
            "partials": [p.__dict__ for p in self.partials],
        }


def _freed(path: Path) -> int:
    """Bytes that leave the disk when this entry goes."""
    try:
        st = path.lstat()
    except OSError:
        return 0
    if path.is_symlink() or st.st_nlink > 1:
        return 0
    return st.st_size


def _age(now: float, *paths: Path) -> float:
    newest = 0.0
    for path in paths:
        try:
            newest = max(newest, path.lstat().st_mtime)
        except OSError:
            continue
    return now - newest


def _repo_dirs(models_dir: Path) -> Iterator[Path]:
    if not models_dir.is_dir():
        return
    for entry in sorted(models_dir.iterdir()):
        if entry.name.startswith(_REPO_PREFIXES) and entry.is_dir() and not entry.is_symlink():
            if inside(models_dir, entry / "blobs"):
                yield entry
            else:
                logger.warning("skipping %s: its blobs/ resolves outside %s", entry, models_dir)


def _referenced(repo: Path) -> set[Path]:
    """Blobs the snapshots link to (first hop, as the library resolves them)."""
    found: set[Path] = set()
    snapshots = repo / "snapshots"
    if not snapshots.is_dir():
        return found
    for root, _dirs, files in os.walk(snapshots):
        for name in files:
            entry = Path(root) / name
            if entry.is_symlink():
                found.add(Path(os.path.abspath(entry.parent / os.readlink(entry))))
    return found


def _library_lock(models_dir: Path, repo: Path, etag: str) -> Path:
    return models_dir / ".locks" / repo.name / f"{etag}.lock"


def collect(
    models_dir: Path,
    *,
    live: LiveDownloads,
    grace: float,
    ours: Iterable[str] = (),
    now: float | None = None,
) -> GcReport:
    """Remove orphans (module docstring). `ours`: repo folders TalkTuah has jobs for; their
    library `.incomplete` files are removed at once (nothing can resume them), others only
    after `grace` seconds without a write (another tool may be writing them)."""
    now = time.time() if now is None else now
    ours = set(ours)
    removed: list[Removed] = []

    def remove(path: Path, kind: str) -> None:
        size = _freed(path)
        try:
            path.unlink()
        except FileNotFoundError:
            return
        removed.append(Removed(str(path), kind, size))

    for repo in _repo_dirs(models_dir):
        blobs = repo / "blobs"
        if not blobs.is_dir():
            continue
        referenced = _referenced(repo)
        for entry in sorted(blobs.iterdir()):
            name = entry.name
            if name.endswith(PARTIAL_SUFFIX):
                etag = name[: -len(PARTIAL_SUFFIX)]
                meta = blobs / f"{etag}{META_SUFFIX}"
                if live.covers(repo.name, etag) or _age(now, entry, meta) < grace:
                    continue
                lock = WriterLock(blobs / f"{etag}{LOCK_SUFFIX}")
                if not lock.try_acquire():
                    continue  # being written, here or by another process
                try:
                    remove(entry, "partial")
                    remove(meta, "partial")
                finally:
                    lock.release()
            elif name.endswith(META_SUFFIX):
                etag = name[: -len(META_SUFFIX)]
                if not (blobs / f"{etag}{PARTIAL_SUFFIX}").exists() and _age(now, entry) >= grace:
                    remove(entry, "partial")
            elif name.endswith(LOCK_SUFFIX):
                lock, size = WriterLock(entry), _freed(entry)  # before we write our pid
                if lock.try_acquire():
                    lock.release()
                    removed.append(Removed(str(entry), "lock", size))
            elif name.endswith(_LIBRARY_PARTIAL):
                etag = name.split(".", 1)[0]
                if lock_is_held(_library_lock(models_dir, repo, etag)):
                    continue
                if repo.name in ours or _age(now, entry) >= grace:
                    remove(entry, "library_partial")
            elif name.endswith(".tmp") or entry.is_dir():
                continue
            elif Path(os.path.abspath(entry)) not in referenced:
                if live.covers(repo.name, name):
                    continue
                lock = WriterLock(blobs / f"{name}{LOCK_SUFFIX}")
                if lock_is_held(_library_lock(models_dir, repo, name)) or not lock.try_acquire():
                    continue
                try:
                    if Path(os.path.abspath(entry)) not in _referenced(repo):
                        remove(entry, "blob")
                finally:
                    lock.release()
    for item in removed:
        logger.info("reclaimed %s (%s, %d bytes)", item.path, item.kind, item.bytes)
    return GcReport(removed)


def report(models_dir: Path, *, live: LiveDownloads) -> StorageReport:
    """Where the bytes of the models dir are: in total (each file once, hard links and
    symlinks not counted twice), per model, in partials; and what the disk has left."""
    total = 0
    seen: set[tuple[int, int]] = set()
    if models_dir.is_dir():
        for root, _dirs, files in os.walk(models_dir):
            for name in files:
                try:
                    st = (Path(root) / name).lstat()
                except OSError:
                    continue
                if (Path(root) / name).is_symlink() or (st.st_dev, st.st_ino) in seen:
                    continue
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    models: dict[str, int] = {}
    if models_dir.is_dir():
        for cached in scan_cache_dir(models_dir).repos:
            if cached.repo_type == "model":
                models[cached.repo_id] = cached.size_on_disk  # each blob once per repo
    now = time.time()
    partials: list[PartialFile] = []
    for repo in _repo_dirs(models_dir):
        blobs = repo / "blobs"
        if not blobs.is_dir():
            continue
        for entry in sorted(blobs.iterdir()):
            if entry.name.endswith(PARTIAL_SUFFIX):
                etag, kind = entry.name[: -len(PARTIAL_SUFFIX)], "partial"
                live_now = live.covers(repo.name, etag) or lock_is_held(
                    blobs / f"{etag}{LOCK_SUFFIX}"
                )
            elif entry.name.endswith(_LIBRARY_PARTIAL):
                etag, kind = entry.name.split(".", 1)[0], "library_partial"
                live_now = lock_is_held(_library_lock(models_dir, repo, etag))
            else:
                continue
            partials.append(
                PartialFile(
                    model_id=model_id_of(repo.name),
                    path=str(entry),
                    bytes=_freed(entry),
                    age_seconds=round(_age(now, entry), 1),
                    kind=kind,
                    live=live_now,
                )  # fmt: skip
            )
    free = shutil.disk_usage(models_dir).free if models_dir.is_dir() else 0
    return StorageReport(str(models_dir), total, free, models, partials)
