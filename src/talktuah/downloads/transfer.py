"""Resume inside a file: one stable partial per blob, one writer, Range + If-Range, verified.

Why not the library's transfer: huggingface_hub 2.4 writes each transfer to a process-unique
`blobs/<etag>.<uuid>.incomplete` and deletes it when the transfer fails (its PR #4228, on
purpose: on filesystems where `flock` silently succeeds for everyone, a shared partial let two
processes append to one file). So after a crash, a stop or a failed attempt, the file in flight
starts again from zero: a 15 GB shard killed at 90 % costs 13.5 GB again. Here the partial is
stable and reused, and the library's failure mode is closed differently:

- **One writer.** `WriterLock` is an `flock` on `blobs/<etag>.talktuah-lock`, honoured by every
  TalkTuah process (a second job, a second server or tool sharing the models dir); after
  taking it the holder checks that the path still names the inode it locked, so removing a
  lock file (release, gc) can never let two holders in. The kernel drops the lock of a killed
  process; the next writer takes over the partial.
- **Bytes are written at explicit offsets** (`pwrite`), never appended, so even two writers
  on a filesystem with a fake `flock` write the same bytes at the same places.
- **Nothing unverified becomes a blob.** The content is hashed as it streams (the resumed
  prefix is read back from disk first) and checked against the LFS sha256 or the git blob id
  before the partial moves into `blobs/`. A mismatch after a resume retries from zero once;
  a second mismatch fails the file and removes the partial: a splice of old and new bytes can
  never land.
- **The resumed offset is never past what is on disk.** Data is `fsync`ed at checkpoints and
  the checkpoint is recorded in `<etag>.talktuah-partial.json` with the boot id. After a kill -9
  the kernel still holds every byte that was written, so the partial's size is trusted; after
  a reboot (another boot id) the partial is cut back to the last checkpoint.
- **The server is not trusted.** A resume sends `Range: bytes=N-` and `If-Range: <validator>`
  (the strong ETag the server sent when the partial was started, which on the real Hub is the
  CDN's own). A 206 must carry exactly `Content-Range: bytes N-(size-1)/size`; a 200 (Range
  ignored, or the validator no longer matches) restarts from zero; so does a 416 or a
  Content-Range that does not fit.

The result is laid out as huggingface_hub does it, with its own helpers (`repo_folder_name`,
`_get_pointer_path`, `_chmod_and_move`, `_create_symlink`; refs by the runner through
`_cache_commit_hash_for_specific_revision`), so `scan_cache_dir`, the engines and the `hf` CLI
see an ordinary cache. Each internal is held by tests/downloads/test_library_internals.py and
the `huggingface-hub` pin in pyproject.

`http_get` is not used: it can send Range, but it accepts any 206 without checking its
Content-Range, writes through a buffered file with no checkpoints, and hides the response's
ETag that a later If-Range needs.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import logging
import os
import queue
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
from huggingface_hub import constants as hf_constants
from huggingface_hub.file_download import (
    _chmod_and_move,
    _create_symlink,
    _get_pointer_path,
    _normalize_etag,
    repo_folder_name,
)
from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

from ..confine import inside
from ..errors import DownloadError, HubDataError, IntegrityError
from .hub_data import hub_label
from .progress import JobProgress

logger = logging.getLogger(__name__)

PARTIAL_SUFFIX = ".talktuah-partial"
META_SUFFIX = ".talktuah-partial.json"
LOCK_SUFFIX = ".talktuah-lock"
_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
_CONTENT_RANGE = re.compile(r"bytes (\d{1,19})-(\d{1,19})/(\d{1,19})")
_LOCK_POLL = 0.1
_HASH_BLOCK = 4 * 1024 * 1024
_MAX_RESTARTS = 3


@dataclass(frozen=True)
class Target:
    """One file to fetch, every value already checked against planning (hub_data)."""

    repo_id: str
    commit: str
    path: str
    etag: str  # the blob's name: the LFS sha256, or the git blob id of a regular file
    size: int
    url: str  # the resolve URL; a redirect to a CDN is followed per request
    lfs: bool


@dataclass(frozen=True)
class Checkpoints:
    """How often written bytes are fsynced and recorded: whichever comes first."""

    every_bytes: int = 64 * 1024 * 1024
    every_seconds: float = 2.0


def boot_id() -> str | None:
    """This boot's id: a partial recorded under another one may have lost unsynced bytes."""
    try:
        return _BOOT_ID.read_text().strip() or None
    except OSError:
        return None


def blobs_dir(models_dir: Path, repo_id: str) -> Path:
    return models_dir / repo_folder_name(repo_id=repo_id, repo_type="model") / "blobs"


def partial_paths(blobs: Path, etag: str) -> tuple[Path, Path, Path]:
    """(partial, its checkpoint record, its lock) for one blob."""
    return (
        blobs / f"{etag}{PARTIAL_SUFFIX}",
        blobs / f"{etag}{META_SUFFIX}",
        blobs / f"{etag}{LOCK_SUFFIX}",
    )


def partial_bytes(models_dir: Path, repo_id: str, etags: list[str]) -> int:
    """Bytes already on disk in partials of these blobs (the disk preflight needs less)."""
    blobs = blobs_dir(models_dir, repo_id)
    total = 0
    for etag in etags:
        try:
            total += partial_paths(blobs, etag)[0].stat().st_size
        except OSError:
            continue
    return total


# -- the writer lock ------------------------------------------------------------------------


class WriterLock:
    """An exclusive `flock` on a lock file, removable without ever admitting two holders.

    Removing a lock file that someone waits on is the classic way to get two holders (the
    waiter locks the old inode, a newcomer creates and locks a new one). Every holder
    therefore checks, once it has the lock, that the path still names the inode it locked,
    and starts over if not; the file is removed only by a holder.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def try_acquire(self) -> bool:
        if self._fd is not None:
            return True
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o664)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    return False
                raise
            try:
                same = os.stat(self.path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self._fd = fd
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
                return True
            os.close(fd)  # the file was removed (or replaced) while we waited: start over

    def acquire(self, check: Callable[[], None], on_wait: Callable[[], None] | None = None) -> None:
        """Wait for the lock; `check` raises to give up (a cancel, a shutdown)."""
        waited = False
        while not self.try_acquire():
            if not waited and on_wait is not None:
                on_wait()
            waited = True
            check()
            time.sleep(_LOCK_POLL)

    def release(self, *, remove: bool = True) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if remove:
                self.path.unlink(missing_ok=True)
        finally:
            os.close(fd)  # closing drops the flock


def lock_is_held(path: Path) -> bool:
    """True when some process holds this `flock` lock file right now."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


# -- the checkpoint record -----------------------------------------------------------------


@dataclass
class PartialRecord:
    repo_id: str
    commit: str
    path: str
    etag: str
    size: int
    synced: int  # bytes fsynced at the last checkpoint
    boot_id: str | None
    validator: str | None  # the strong ETag of the response that started the partial

    def matches(self, target: Target) -> bool:
        return (self.repo_id, self.etag, self.size) == (target.repo_id, target.etag, target.size)

    @staticmethod
    def read(path: Path) -> PartialRecord | None:
        """The record, or None when it is missing or not ours (it is then discarded)."""
        try:
            raw: Any = json.loads(path.read_text())
            record = PartialRecord(
                repo_id=raw["repo_id"], commit=raw["commit"], path=raw["path"],
                etag=raw["etag"], size=raw["size"], synced=raw["synced"],
                boot_id=raw.get("boot_id"), validator=raw.get("validator"),
            )  # fmt: skip
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if not isinstance(record.synced, int) or not isinstance(record.size, int):
            return None
        return record

    def write(self, path: Path) -> None:
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("w") as handle:
            json.dump(self.__dict__, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)


# -- hashing beside the transfer -----------------------------------------------------------


class _StreamHasher:
    """Hashes what the transfer writes in a thread of its own (hashlib releases the GIL), so
    verifying before the move costs no transfer time. A resumed prefix is read back first."""

    def __init__(self, lfs: bool, size: int, partial: Path, prefix: int) -> None:
        self._digest = hashlib.sha256() if lfs else hashlib.sha1(f"blob {size}\0".encode())
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=64)
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, args=(partial, prefix), name="talktuah-hash", daemon=True
        )
        self._thread.start()

    def _run(self, partial: Path, prefix: int) -> None:
        try:
            if prefix:
                with partial.open("rb") as handle:
                    left = prefix
                    while left > 0 and (block := handle.read(min(_HASH_BLOCK, left))):
                        self._digest.update(block)
                        left -= len(block)
            while (piece := self._queue.get()) is not None:
                self._digest.update(piece)
        except BaseException as exc:  # reported by hexdigest()
            self._error = exc
            while self._queue.get() is not None:
                pass

    def update(self, piece: bytes) -> None:
        self._queue.put(piece)

    def hexdigest(self) -> str:
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._digest.hexdigest()

    def abandon(self) -> None:
        self._queue.put(None)
        self._thread.join()


# -- one file ------------------------------------------------------------------------------


class RestartFromZero(Exception):
    """The server will not continue this partial (changed content, bad Content-Range)."""


class Transfer:
    """Fetch one file into the cache through a resumable partial. See the module docstring."""

    def __init__(
        self,
        target: Target,
        models_dir: Path,
        *,
        token: str | None,
        endpoint: str | None,
        progress: JobProgress,
        checkpoints: Checkpoints,
    ) -> None:
        self.target = target
        self.models_dir = models_dir
        self.token = token
        self.endpoint = endpoint
        self.progress = progress
        self.checkpoints = checkpoints
        storage = models_dir / repo_folder_name(repo_id=target.repo_id, repo_type="model")
        self.storage = storage
        self.blobs = storage / "blobs"
        self.blob = self.blobs / target.etag
        self.pointer = Path(
            _get_pointer_path(str(storage), target.commit, os.path.join(*target.path.split("/")))
        )
        self.partial, self.meta, lock = partial_paths(self.blobs, target.etag)
        self.lock = WriterLock(lock)
        self.resumed_from = 0  # the offset the first request of this transfer started at
        self._written = 0
        self._hasher: _StreamHasher

    def run(self) -> Path:
        """The snapshot entry of the file, once it is there and verified."""
        self.blobs.mkdir(parents=True, exist_ok=True)
        self.pointer.parent.mkdir(parents=True, exist_ok=True)
        if not inside(self.models_dir, self.blobs) or not inside(
            self.models_dir, self.pointer.parent
        ):
            raise DownloadError(
                f"{self.blobs} resolves outside the models dir {self.models_dir}; nothing was "
                "written. Remove the link that points it elsewhere, then request the download "
                "again."
            )
        self.lock.acquire(self.progress.check, on_wait=self._log_wait)
        try:
            if not self.blob.exists():
                self._fetch_blob()
            if not os.path.lexists(self.pointer):
                _create_symlink(str(self.blob), str(self.pointer), new_blob=False)
        finally:
            self.lock.release()
        return self.pointer

    def _log_wait(self) -> None:
        logger.info(
            "%s of %s: another writer holds %s; waiting for it",
            self.target.path, self.target.repo_id, self.lock.path,
        )  # fmt: skip

    def discard(self) -> None:
        """Forget the partial (a cancel): only while holding the lock, or when nobody does."""
        holder = self.lock if self.lock.held else WriterLock(self.lock.path)
        if not holder.try_acquire():
            return
        try:
            self.partial.unlink(missing_ok=True)
            self.meta.unlink(missing_ok=True)
        finally:
            holder.release()

    # -- the transfer proper

    def _fetch_blob(self) -> None:
        for attempt in (1, 2):
            offset = self._resume_offset()
            self.resumed_from = offset
            digest = self._download(offset)
            if digest == self.target.etag:
                os.chmod(self.partial, 0o644)
                _chmod_and_move(self.partial, self.blob)
                self.meta.unlink(missing_ok=True)
                return
            self.partial.unlink(missing_ok=True)
            self.meta.unlink(missing_ok=True)
            if offset == 0 or attempt == 2:
                kind = "sha256" if self.target.lfs else "git blob id"
                raise IntegrityError(
                    f"{self.target.path} of {self.target.repo_id} is corrupt ({kind} {digest}, "
                    f"the Hub says {self.target.etag}); the bad file was removed. Request the "
                    "download again; if this repeats, the copy on the Hub or a proxy in "
                    "between is damaged."
                )
            logger.warning(
                "%s of %s did not verify after resuming at byte %d; fetching it from zero",
                self.target.path, self.target.repo_id, offset,
            )  # fmt: skip
            self.progress.file_restarted()

    def _resume_offset(self) -> int:
        """Bytes of the partial to keep: all of them after a crash of the process, the last
        checkpoint after a reboot, none when the record is missing or for other content."""
        record = PartialRecord.read(self.meta)
        try:
            on_disk = self.partial.stat().st_size
        except FileNotFoundError:
            on_disk = 0
        if record is None or not record.matches(self.target):
            offset = 0
            record = None
        elif record.boot_id is not None and record.boot_id == boot_id():
            offset = min(on_disk, self.target.size)
        else:
            offset = min(on_disk, record.synced, self.target.size)
        with self.partial.open("ab") as handle:
            handle.truncate(offset)
        if record is None:
            self._record(0, None)
        return offset

    def _record(self, synced: int, validator: str | None) -> None:
        t = self.target
        PartialRecord(
            t.repo_id, t.commit, t.path, t.etag, t.size, synced, boot_id(), validator
        ).write(self.meta)

    def _download(self, offset: int) -> str:
        """Stream the rest of the file into the partial; the digest of the whole of it."""
        record = PartialRecord.read(self.meta)
        validator = record.validator if record is not None else None
        self.progress.file_resumed(offset)
        self._hasher = _StreamHasher(self.target.lfs, self.target.size, self.partial, offset)
        fd = os.open(self.partial, os.O_WRONLY)
        restarts = 0
        try:
            while offset < self.target.size:
                try:
                    offset, validator = self._request(fd, offset, validator)
                except RestartFromZero as why:
                    restarts += 1
                    if restarts > _MAX_RESTARTS:
                        raise DownloadError(
                            f"{self.target.path} of {self.target.repo_id}: {why}, "
                            f"{restarts} times in a row. Check HF_ENDPOINT: the mirror or a "
                            "proxy in between is broken or hostile."
                        ) from why
                    logger.warning("%s: %s; restarting it from zero", self.target.path, why)
                    self._restart(fd)
                    offset, validator = 0, None
            os.fsync(fd)
            self._record(offset, validator)
            return self._hasher.hexdigest()
        except BaseException:
            self._hasher.abandon()
            raise
        finally:
            os.close(fd)

    def _restart(self, fd: int) -> None:
        """Drop every byte of the partial: the next bytes are the file's first."""
        self._hasher.abandon()
        os.ftruncate(fd, 0)
        self._record(0, None)
        self.progress.file_restarted()
        self._hasher = _StreamHasher(self.target.lfs, self.target.size, self.partial, 0)

    def _request(self, fd: int, offset: int, validator: str | None) -> tuple[int, str | None]:
        """One GET from `offset`; returns where it got to. A connection that drops after
        some bytes arrived is resumed at once by the caller (the same run, from the byte);
        one that drops before any byte raises, for the job's retry policy."""
        target = self.target
        headers = build_hf_headers(token=self.token or False)
        headers["Accept-Encoding"] = "identity"  # a byte range of a gzip body means nothing
        if offset > 0:
            headers["Range"] = f"bytes={offset}-"
            if validator is not None:
                headers["If-Range"] = validator
        start = offset
        try:
            with get_session().stream(
                "GET", target.url, headers=headers,
                timeout=hf_constants.HF_HUB_DOWNLOAD_TIMEOUT, follow_redirects=True,
            ) as response:  # fmt: skip
                if response.status_code == 416:
                    raise RestartFromZero(f"the server refused Range bytes={offset}- (416)")
                hf_raise_for_status(response)
                self._check_identity(response)
                if self._body_starts_at(response, offset) == 0:
                    if offset > 0:
                        logger.info(
                            "%s: the server sent the whole file (it ignored Range, or the "
                            "content changed); restarting it from zero", target.path,
                        )  # fmt: skip
                        self._restart(fd)
                    offset = start = 0
                    validator = _strong_etag(response.headers.get("ETag"))
                    self._record(0, validator)
                offset = self._stream(response, fd, offset, validator)
        except (httpx2.TransportError, httpx2.StreamError) as exc:
            if self._written > start:
                logger.warning(
                    "%s: connection lost at byte %d of %d (%s: %s); resuming from there",
                    target.path, self._written, target.size, type(exc).__name__, exc,
                )  # fmt: skip
                return self._written, validator
            raise
        if offset < target.size:
            if offset == start:
                raise OSError(
                    f"Consistency check failed: {target.path} ended at byte {offset} of "
                    f"{target.size}, and the server sent nothing more"
                )
            logger.warning(
                "%s: body ended at byte %d of %d; resuming", target.path, offset, target.size
            )
        return offset, validator

    def _stream(
        self, response: httpx2.Response, fd: int, offset: int, validator: str | None
    ) -> int:
        """Write the body at its offsets, hash it, checkpoint it; `_written` tracks how far
        it got even when the connection drops."""
        size = self.target.size
        self._written = offset
        synced, last_sync = offset, time.monotonic()
        for piece in response.iter_bytes():
            if not piece:
                continue
            if offset + len(piece) > size:
                raise RestartFromZero(f"the server sent more than the {size} bytes it announced")
            os.pwrite(fd, piece, offset)
            offset += len(piece)
            self._written = offset
            self._hasher.update(piece)
            self.progress.transferred(len(piece))
            now = time.monotonic()
            if (
                offset - synced >= self.checkpoints.every_bytes
                or now - last_sync >= self.checkpoints.every_seconds
            ):
                os.fsync(fd)
                self._record(offset, validator)
                synced, last_sync = offset, now
        return offset

    def _check_identity(self, response: httpx2.Response) -> None:
        """An answer straight from the hub (not a CDN it redirected to) names the commit and
        the blob it serves: both must be the ones planned, or the bytes are not this file."""
        headers = response.headers
        commit = headers.get("X-Repo-Commit")
        if commit is None:
            return
        etag = _normalize_etag(headers.get("X-Linked-Etag") or headers.get("ETag"))
        if (commit, etag) != (self.target.commit, self.target.etag):
            raise HubDataError(
                f"The hub at {hub_label(self.endpoint)} answered the download of "
                f"{self.target.path} with commit {commit[:80]!r} and ETag {str(etag)[:80]!r}, "
                f"but planning pinned {self.target.commit} and {self.target.etag}. Nothing of "
                "it was kept. Request the download again; if this repeats, check HF_ENDPOINT: "
                "the mirror or a proxy in between is inconsistent or hostile."
            )

    def _body_starts_at(self, response: httpx2.Response, offset: int) -> int:
        """`offset` for a 206 that is exactly the rest of the file, 0 for a 200 (the whole
        file). Anything else is refused: a hostile or broken server cannot make us splice."""
        size = self.target.size
        encoded = response.headers.get("Content-Encoding", "identity").lower() != "identity"
        if response.status_code == 206 and offset > 0 and not encoded:
            header = response.headers.get("Content-Range", "")
            match = _CONTENT_RANGE.fullmatch(header.strip())
            if match is None or tuple(map(int, match.groups())) != (offset, size - 1, size):
                raise RestartFromZero(
                    f"the server answered Range bytes={offset}- with Content-Range {header!r} "
                    f"(expected bytes {offset}-{size - 1}/{size})"
                )
            return offset
        if response.status_code != 200:
            raise DownloadError(
                f"{self.target.path}: the server answered {response.status_code} to a file "
                "download. Check HF_ENDPOINT: the mirror or a proxy in between is broken."
            )
        length = response.headers.get("Content-Length")
        if length is not None and not encoded and length.strip() != str(size):
            raise DownloadError(
                f"{self.target.path}: the server announced {length!r} bytes, the Hub's file "
                f"list says {size}. Check HF_ENDPOINT: the mirror or a proxy in between is "
                "inconsistent."
            )
        return 0


def _strong_etag(value: str | None) -> str | None:
    """An ETag usable in If-Range: strong (no W/), quoted, printable, not absurdly long."""
    if value is None:
        return None
    value = value.strip()
    if value.startswith("W/") or len(value) > 200 or not re.fullmatch(r'"[\x21\x23-\x7e]*"', value):
        return None
    return value
