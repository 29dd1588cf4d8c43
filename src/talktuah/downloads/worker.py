"""Run one download job: file by file through `hf_hub_download`, retried, verified.

Going file by file (rather than one `snapshot_download`) is what lets us skip files that are
already complete after a crash, retry one file without restarting the others, and verify each
LFS file's sha256 as soon as it lands. Plain-HTTP files go through transfer.py, which resumes
inside a file from the byte (across retries, restarts and kill -9) where the library restarts
the file in flight from zero; Xet-backed files keep the library's path. Both leave the
library's cache layout.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import random
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import huggingface_hub.constants as hf_constants
from huggingface_hub import (
    HfApi,
    HfFileMetadata,
    get_hf_file_metadata,
    hf_hub_download,
    hf_hub_url,
    scan_cache_dir,
)
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from ..confine import inside, without_outside
from ..errors import (
    DownloadError,
    HubDataError,
    HubUnavailableError,
    IntegrityError,
)
from .hub_data import (
    Expected,
    check_metadata,
    expect,
    guard_library_metadata,
    hub_label,
    validate_revision,
)
from .hub_errors import hub_error, is_network_error
from .jobs import DownloadJob, PlannedFile
from .plan import cached_file
from .progress import DownloadCancelled, DownloadInterrupted, JobProgress
from .transfer import Checkpoints, Target, Transfer

logger = logging.getLogger(__name__)

_HASH_BLOCK = 4 * 1024 * 1024


class Hasher(Protocol):
    def update(self, data: bytes, /) -> None: ...
    def hexdigest(self) -> str: ...


@dataclass(frozen=True)
class RetryPolicy:
    retries: int
    backoff: float
    backoff_max: float

    def delay(self, attempt: int) -> float:
        """Exponential backoff with full jitter (attempt 1 waits up to `backoff` seconds)."""
        ceiling = min(self.backoff_max, self.backoff * (2 ** (attempt - 1)))
        return random.uniform(ceiling / 2, ceiling)


def is_transient(exc: BaseException) -> bool:
    """Errors worth another try: the network or the Hub hiccuped, nothing was wrong with us."""
    if isinstance(exc, LocalEntryNotFoundError):
        # hf_hub_download's HEAD failed (connection refused, timeout) and nothing is cached.
        return True
    if isinstance(exc, (RepositoryNotFoundError, GatedRepoError, EntryNotFoundError)):
        return False
    if isinstance(exc, RevisionNotFoundError):
        return False
    if isinstance(exc, HfHubHTTPError):
        response = getattr(exc, "response", None)
        code = getattr(response, "status_code", None)
        return code is None or code >= 500 or code in (408, 429)
    if is_network_error(exc):
        return True
    if isinstance(exc, OSError) and "Consistency check failed" in str(exc):
        return True  # a connection dropped and the body came up short
    return False


def _describe(exc: BaseException) -> str:
    """One line naming the real cause: the library wraps a 503 or a refused connection in
    `LocalEntryNotFoundError`, whose own text says only that the file could not be found."""
    if isinstance(exc, LocalEntryNotFoundError) and exc.__cause__ is not None:
        exc = exc.__cause__
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class JobRunner:
    """Everything one job needs, passed in: the manager owns threads, this owns one transfer."""

    def __init__(
        self,
        *,
        job: DownloadJob,
        models_dir: Path,
        endpoint: str | None,
        token: str | None,
        policy: RetryPolicy,
        stall_timeout: float,
        progress: JobProgress,
        cancel: threading.Event,
        persist: Callable[[DownloadJob], None],
        checkpoints: Checkpoints | None = None,
    ) -> None:
        self.job = job
        # A GGUF job's model id names its quant (`org/repo:Q8_0`); the Hub and the cache
        # know the repo.
        self.repo_id = job.model_id.partition(":")[0]
        self.models_dir = models_dir
        self.endpoint = endpoint
        self.token = token
        self.policy = policy
        self.stall_timeout = stall_timeout
        self.progress = progress
        self.cancel = cancel
        self.persist = persist
        # Git blob ids learnt from our own HEAD for regular files the file list gave none for
        # (olah lists no blob ids): what the content is then checked against.
        self._probed_sha1: dict[str, str] = {}
        self.checkpoints = checkpoints or Checkpoints()
        # Files whose content the resumable transfer hashed before moving them into blobs/.
        self._verified_in_transfer: set[str] = set()
        # Where the last transfer of each file started (the resumed offset; for tests, logs).
        self.resumed_from: dict[str, int] = {}

    def run(self) -> None:
        job = self.job
        assert job.commit_hash is not None, "jobs are planned before they run"
        guard_library_metadata()
        cached = {f.path for f in job.files if self._cached_path(f) is not None}
        job.files_done = len(cached)
        self.progress.start(sum(f.size for f in job.files if f.path in cached))
        # Each file's sha256 is checked in a second thread while the next file downloads:
        # hashing 1 GiB takes about a second, which the transfer then hides.
        with ThreadPoolExecutor(1, thread_name_prefix="talktuah-verify") as verifier:
            checks: list[Future[None]] = []
            for planned in job.files:
                self.progress.check()
                for check in checks:
                    if check.done():
                        check.result()  # a corrupt file stops the job before the next one
                if planned.path not in cached:
                    self._fetch(planned)
                    self.progress.file_settled(planned.size)
                if planned.path in self._verified_in_transfer and planned.path not in job.verified:
                    job.verified.append(planned.path)
                    self.persist(job)
                if planned.path not in job.verified:
                    checks.append(verifier.submit(self._verify_and_record, planned))
            for check in checks:
                check.result()
        self._record_ref()

    def _verify_and_record(self, planned: PlannedFile) -> None:
        self._verify(planned)
        self.job.verified.append(planned.path)
        self.persist(self.job)

    def _cached_path(self, planned: PlannedFile) -> Path | None:
        assert self.job.commit_hash is not None
        return cached_file(self.repo_id, planned.path, self.models_dir, self.job.commit_hash)

    def _fetch(self, planned: PlannedFile) -> None:
        job = self.job
        last: BaseException | None = None
        for attempt in range(1, self.policy.retries + 2):
            self.progress.check()
            try:
                expected, meta = self._probe(planned)
                if meta.xet_file_data is not None and not hf_constants.HF_HUB_DISABLE_XET:
                    self._fetch_with_library(planned, expected)
                else:
                    self._fetch_resumable(planned, meta)
                return
            except DownloadCancelled:
                self._discard_partial(planned)
                raise
            except (DownloadInterrupted, HubDataError, IntegrityError):
                raise
            except LocalEntryNotFoundError as exc:
                last = exc  # the HEAD request failed: the Hub is unreachable right now
            except (RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError) as exc:
                # gated too (a RepositoryNotFoundError): worded as planning words it
                raise self._hub_error(exc, planned) from exc
            except OSError as exc:
                if exc.errno == errno.ENOSPC:
                    raise DownloadError(
                        f"The disk filled up while writing {planned.path} of {job.model_id}. "
                        "Free space in the models dir and request the download again."
                    ) from exc
                if not is_transient(exc):
                    raise DownloadError(f"{planned.path}: {_describe(exc)}") from exc
                last = exc
            except Exception as exc:
                if not is_transient(exc):
                    raise DownloadError(f"{planned.path}: {_describe(exc)}") from exc
                last = exc
            self.progress.file_restarted()
            if attempt > self.policy.retries:
                break
            delay = self.policy.delay(attempt)
            logger.warning(
                "job %s: %s failed (%s); retry %d/%d in %.1fs",
                job.id, planned.path, _describe(last), attempt, self.policy.retries, delay,
            )  # fmt: skip
            job.error = f"retrying after: {_describe(last)}"
            self.persist(job)
            if self.cancel.wait(delay):
                self.progress.check()
        raise HubUnavailableError(
            f"Gave up on {planned.path} of {job.model_id} after {self.policy.retries + 1} "
            f"attempts; last error: {_describe(last) if last else 'unknown'}. Check the "
            "network or HF_ENDPOINT, then request the download again: finished files are kept."
        )

    def _fetch_with_library(self, planned: PlannedFile, expected: Expected) -> None:
        """Xet-backed files keep the library's path: hf_xet fetches chunks, not byte ranges,
        and its chunk cache is what survives a restart (docs/downloads.md)."""
        with expect(expected):
            hf_hub_download(
                self.repo_id,
                planned.path,
                revision=self.job.commit_hash,
                cache_dir=self.models_dir,
                endpoint=self.endpoint,
                token=self.token or False,
                etag_timeout=self.stall_timeout,
                tqdm_class=self.progress.bar_class(),
            )

    def _target(self, planned: PlannedFile, etag: str) -> Target:
        assert self.job.commit_hash is not None
        url = hf_hub_url(
            self.repo_id, planned.path, revision=self.job.commit_hash, endpoint=self.endpoint
        )
        return Target(
            repo_id=self.repo_id, commit=self.job.commit_hash, path=planned.path, etag=etag,
            size=planned.size, url=url, lfs=len(etag) == 64,
        )  # fmt: skip

    def _fetch_resumable(self, planned: PlannedFile, meta: HfFileMetadata) -> None:
        """Plain HTTP through our own resumable partial (transfer.py says why)."""
        assert meta.etag is not None  # checked by check_metadata
        transfer = Transfer(
            self._target(planned, meta.etag), self.models_dir,
            token=self.token, endpoint=self.endpoint, progress=self.progress,
            checkpoints=self.checkpoints,
        )  # fmt: skip
        try:
            transfer.run()
        finally:
            self.resumed_from[planned.path] = transfer.resumed_from
        self._verified_in_transfer.add(planned.path)

    def _hub_error(self, exc: BaseException, planned: PlannedFile) -> BaseException:
        """The Hub's refusal of one planned file, worded as planning words it (one
        translator, downloads/hub_errors.py); `exc` itself when it is not the Hub's."""
        job = self.job
        return (
            hub_error(
                exc,
                repo_id=self.repo_id,
                revision=job.revision,
                endpoint=self.endpoint,
                path=planned.path,
            )
            or exc
        )

    def _discard_partial(self, planned: PlannedFile) -> None:
        """A cancelled file's partial goes: the user asked for the bytes to stop."""
        etag = planned.sha256 or planned.git_sha1 or self._probed_sha1.get(planned.path)
        if etag is not None:
            target = self._target(planned, etag)
            Transfer(
                target, self.models_dir, token=None, endpoint=None, progress=self.progress,
                checkpoints=self.checkpoints,
            ).discard()  # fmt: skip

    def _probe(self, planned: PlannedFile) -> tuple[Expected, HfFileMetadata]:
        """One HEAD without retries before handing the file to the library; returns what the
        library's own HEAD must then agree with.

        When the Hub fails a HEAD and nothing is cached, `hf_hub_download` retries it on its
        own for ~23 s (5 tries, 1-8 s apart) whatever our settings say, and a cancel waits
        that long. Failing fast here keeps retries, backoff and cancellation ours. The answer
        is checked (hub_data.check_metadata) before anything is written.
        """
        assert self.job.commit_hash is not None
        url = hf_hub_url(
            self.repo_id, planned.path, revision=self.job.commit_hash, endpoint=self.endpoint
        )
        lfs = planned.sha256 is not None
        expected = Expected(
            path=planned.path,
            commit=self.job.commit_hash,
            etag=planned.sha256 if lfs else planned.git_sha1,
            lfs=lfs,
            endpoint=self.endpoint,
        )
        meta = get_hf_file_metadata(url, token=self.token or False, timeout=self.stall_timeout)
        check_metadata(meta, endpoint=self.endpoint, expected=expected)
        if expected.etag is None and meta.etag is not None and len(meta.etag) == 40:
            self._probed_sha1[planned.path] = meta.etag
            expected = Expected(planned.path, expected.commit, meta.etag, False, self.endpoint)
        return expected, meta

    def _verify(self, planned: PlannedFile) -> None:
        """Size, then content: sha256 for LFS files, the git blob id for the others (a
        tampered config.json has the right size). A file that resolves outside the models
        dir is neither read nor followed: only its link is removed."""
        path = self._cached_path(planned)
        if path is None:
            raise IntegrityError(f"{planned.path} vanished from the cache after download.")
        if not inside(self.models_dir, path):
            target = path.resolve()
            if path.is_symlink():
                path.unlink()
            raise HubDataError(
                f"The hub at {hub_label(self.endpoint)} made {planned.path} of "
                f"{self.job.model_id} resolve outside the models dir ({path} -> {target}); "
                "its link was removed and nothing outside was touched. Check HF_ENDPOINT: "
                "the mirror or a proxy in between is hostile."
            )
        size = path.stat().st_size
        problem = None
        git_sha1 = planned.git_sha1 or self._probed_sha1.get(planned.path)
        if size != planned.size:
            problem = f"size {size} bytes, the Hub says {planned.size}"
        elif planned.sha256 is not None:
            digest = self._digest(path, hashlib.sha256())
            if digest != planned.sha256:
                problem = f"sha256 {digest}, the Hub says {planned.sha256}"
        elif git_sha1 is not None:
            digest = self._digest(path, hashlib.sha1(f"blob {size}\0".encode()))
            if digest != git_sha1:
                problem = f"git blob id {digest}, the Hub says {git_sha1}"
        if problem is None:
            return
        self._remove_file(planned)
        raise IntegrityError(
            f"{planned.path} of {self.job.model_id} is corrupt ({problem}); the bad file was "
            "removed. Request the download again; if this repeats, the copy on the Hub or a "
            "proxy in between is damaged."
        )

    def _digest(self, path: Path, digest: Hasher) -> str:
        with path.open("rb") as handle:
            while block := handle.read(_HASH_BLOCK):
                self.progress.check()
                digest.update(block)
        return digest.hexdigest()

    def _remove_file(self, planned: PlannedFile) -> None:
        """Drop one snapshot entry (and its blob) through the library's delete strategy."""
        info = scan_cache_dir(self.models_dir)
        for repo in info.repos:
            if repo.repo_id != self.repo_id or repo.repo_type != "model":
                continue
            for rev in repo.revisions:
                if rev.commit_hash != self.job.commit_hash:
                    continue
                doomed = [
                    f for f in rev.files
                    if f.file_path.relative_to(rev.snapshot_path).as_posix() == planned.path
                ]  # fmt: skip
                without_outside(info.delete_files(*doomed), self.models_dir).execute()

    def _record_ref(self) -> None:
        """Point `refs/<branch>` at the commit we pinned, as snapshot_download would.

        We download by commit sha (so a branch moving mid-job cannot mix two commits), and the
        library records refs only for downloads made by branch name. Engines load models
        offline by name (`org/model` means `main`), so the ref must exist. The library has
        no public call for this; its helper keeps the ref write atomic and in its layout.
        """
        from huggingface_hub.file_download import (
            _cache_commit_hash_for_specific_revision,
            repo_folder_name,
        )

        job = self.job
        assert job.commit_hash is not None
        validate_revision(job.revision)  # a job stored before revisions were checked
        storage = self.models_dir / repo_folder_name(repo_id=self.repo_id, repo_type="model")
        _cache_commit_hash_for_specific_revision(str(storage), job.revision, job.commit_hash)


def make_api(endpoint: str | None, token: str | None) -> HfApi:
    return HfApi(endpoint=endpoint, token=token or False)
