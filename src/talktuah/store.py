"""The models dir: a standard Hugging Face hub cache that TalkTuah lists and prunes.

Keeping the library's layout (`models--org--name/{blobs,snapshots,refs}`) means a vLLM
container that mounts the same directory with `HF_HOME` set finds every model we pulled, and
`hf download` / `hf cache ls` work on it too. Listing and deletion go through
`huggingface_hub`'s cache manager, never through paths we build by hand.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from huggingface_hub import CachedRepoInfo, CachedRevisionInfo, HFCacheInfo, scan_cache_dir
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id

from .confine import without_outside
from .downloads.jobs import JobStore
from .errors import (
    InvalidModelIdError,
    ModelBusyError,
    ModelInUseError,
    ModelNotFoundError,
    StoragePermissionError,
)
from .scan_cache import ModelIds, ScanCache
from .state import StateDB
from .verified import RevisionKey, VerifiedRevisions

logger = logging.getLogger(__name__)

MAX_MODEL_ID_LENGTH = 96  # the Hub's own limit, also enforced by validate_repo_id
_WEIGHT_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")


def validate_model_id(model_id: str) -> str:
    """Return `model_id` if it is safe to map into the cache, else raise InvalidModelIdError.

    The library's validator already rejects `..`, `--`, more than one `/` and characters
    outside `[A-Za-z0-9._-]`; our own rules run first so the message names the actual
    problem (a path, a backslash) rather than a regex.
    """
    hint = "Use a Hugging Face repo id such as 'Qwen/Qwen2.5-0.5B-Instruct'."
    if not model_id or not model_id.strip():
        raise InvalidModelIdError(f"model_id is empty. {hint}")
    if len(model_id) > MAX_MODEL_ID_LENGTH:
        raise InvalidModelIdError(
            f"model_id is {len(model_id)} characters long; a repo id has at most "
            f"{MAX_MODEL_ID_LENGTH}. {hint}"
        )
    if "\\" in model_id:
        raise InvalidModelIdError(f"model_id {model_id!r} contains a backslash. {hint}")
    if model_id.startswith(("/", "~")) or os.path.isabs(model_id):
        raise InvalidModelIdError(
            f"model_id {model_id!r} looks like a filesystem path, not a repo id. {hint}"
        )
    if ".." in model_id.split("/") or ".." in model_id:
        raise InvalidModelIdError(f"model_id {model_id!r} contains '..'. {hint}")
    try:
        validate_repo_id(model_id)
    except HFValidationError as exc:
        raise InvalidModelIdError(f"Invalid model_id {model_id!r}: {exc} {hint}") from exc
    return model_id


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, tz=UTC).isoformat()


@dataclass(frozen=True)
class LocalRevision:
    commit_hash: str
    refs: list[str]
    size_bytes: int
    files: list[str]
    last_modified: str
    complete: bool


@dataclass(frozen=True)
class LocalModel:
    model_id: str
    size_bytes: int
    revisions: list[LocalRevision]
    last_modified: str
    active: bool
    complete: bool
    path: str

    @property
    def size_mb(self) -> float:
        return round(self.size_bytes / (1024 * 1024), 1)


@dataclass(frozen=True)
class _Facts:
    """What the state DB says about every model, read once per listing (three queries, no
    job's file list decoded)."""

    downloading: set[str]
    ours: set[RevisionKey]
    verified: dict[RevisionKey, frozenset[str]]


@dataclass(frozen=True)
class DeletedModel:
    model_id: str
    size_bytes: int
    was_active: bool

    @property
    def size_mb(self) -> float:
        return round(self.size_bytes / (1024 * 1024), 1)


class ModelStore:
    """List and delete models in the cache.

    The state DB says which model is active and which download jobs exist: a model being
    downloaded cannot be deleted, and a revision we downloaded is complete when every file a
    finished job verified for it is still there (verified.py), whatever later jobs did.
    """

    def __init__(self, models_dir: Path, state: StateDB) -> None:
        self.models_dir = models_dir
        self.state = state
        self.jobs = JobStore(state)
        self.verified = VerifiedRevisions(state)
        self.scans = ScanCache(models_dir, self._scan_once)
        self.ids = ModelIds(models_dir)
        # The last listing and what it was built from: reused while the scan object, the
        # active model and the state DB's facts are all the same.
        self._listed: tuple[HFCacheInfo, str | None, _Facts, list[LocalModel]] | None = None

    def _facts(self) -> _Facts:
        return _Facts(
            downloading=self.jobs.live_model_ids(),
            ours=self.jobs.targeted_revisions(),
            verified=self.verified.all(),
        )

    def active_download(self, model_id: str) -> str | None:
        job = self.jobs.live_for(model_id)
        return job.id if job is not None else None

    def ensure_dir(self) -> None:
        self.models_dir.mkdir(parents=True, exist_ok=True)

    def _scan(self, *, fresh: bool = False) -> HFCacheInfo | None:
        """The cache as the library sees it; `fresh` skips the reuse of an unchanged scan."""
        if not self.models_dir.is_dir():
            return None
        return self._scan_once() if fresh else self.scans.get()

    def _scan_once(self) -> HFCacheInfo:
        for attempt in range(3):
            try:
                info = scan_cache_dir(self.models_dir)
            except FileNotFoundError:
                # A download or a delete changed the cache while the library walked it.
                if attempt == 2:
                    raise
                continue
            for warning in info.warnings:  # once per scan, not once per (cached) listing
                logger.warning("skipping a damaged entry in %s: %s", self.models_dir, warning)
            return info
        raise AssertionError("unreachable")

    def _find(self, info: HFCacheInfo | None, model_id: str) -> CachedRepoInfo | None:
        if info is None:
            return None
        for repo in info.repos:
            if repo.repo_type == "model" and repo.repo_id == model_id and repo.revisions:
                return repo
        return None

    def model_ids(self) -> list[str]:
        """Ids of the models with a snapshot, sorted: what counts and names need, without
        the scan (scan_cache.ModelIds)."""
        return self.ids.get()

    def list(self) -> list[LocalModel]:
        """Every model with at least one snapshot, sorted by id."""
        info = self._scan()
        if info is None:
            return []
        active = self.state.active_model
        # Repos with a partial download, from the scan itself (no second walk of each blobs/).
        facts = self._facts()
        last = self._listed
        if last is not None and last[0] is info and last[1] == active and last[2] == facts:
            return list(last[3])
        partial = {f.file_path.parent.parent for f in info.incomplete_files}
        models = [
            self._describe(repo, active, facts, has_partial=repo.repo_path in partial)
            for repo in info.repos
            if repo.repo_type == "model" and repo.revisions
        ]
        models.sort(key=lambda m: m.model_id.lower())
        self._listed = (info, active, facts, models)
        return list(models)

    def get(self, model_id: str) -> LocalModel:
        validate_model_id(model_id)
        repo = self._find(self._scan(), model_id)
        if repo is None:
            raise self._not_found(model_id)
        return self._describe(repo, self.state.active_model, self._facts())

    def exists(self, model_id: str) -> bool:
        validate_model_id(model_id)
        return self._find(self._scan(), model_id) is not None

    def delete(self, model_id: str, *, force: bool = False) -> DeletedModel:
        """Remove every revision of a model through the library's delete strategy.

        The strategy logs and skips files it may not remove, so writability is checked
        before anything is touched (nothing half-deleted) and the result is verified after.
        """
        validate_model_id(model_id)
        job_id = self.active_download(model_id)
        if job_id is not None:
            raise ModelBusyError(
                f"{model_id} is being downloaded (job {job_id}). Cancel it first with "
                f"DELETE /api/downloads/{job_id}, then delete the model."
            )
        info = self._scan(fresh=True)  # what is on disk now, not what was listed
        repo = self._find(info, model_id)
        if info is None or repo is None:
            raise self._not_found(model_id)
        was_active = self.state.active_model == model_id
        if was_active and not force:
            raise ModelInUseError(
                f"{model_id} is the active model. Switch to another model first "
                "(POST /api/switch-model?model_id=...) or repeat the request with force=true."
            )
        self._check_writable(model_id, repo.repo_path)
        strategy = without_outside(
            info.delete_revisions(*(rev.commit_hash for rev in repo.revisions)), self.models_dir
        )
        try:
            strategy.execute()
        except OSError as exc:
            raise self._permission_error(model_id, repo.repo_path, exc) from exc
        if repo.repo_path.exists():
            raise self._permission_error(model_id, repo.repo_path, None)
        self.scans.invalidate()
        self.verified.forget(model_id)
        if was_active:
            self.state.active_model = None
        logger.info("deleted %s (%d bytes)", model_id, repo.size_on_disk)
        return DeletedModel(model_id=model_id, size_bytes=repo.size_on_disk, was_active=was_active)

    def _check_writable(self, model_id: str, repo_path: Path) -> None:
        dirs = [repo_path.parent]
        for root, subdirs, _files in os.walk(repo_path):
            dirs.append(Path(root))
            dirs.extend(Path(root) / d for d in subdirs)
        for directory in dirs:
            if not os.access(directory, os.W_OK | os.X_OK):
                raise self._permission_error(model_id, directory, None)

    def _permission_error(
        self, model_id: str, path: Path, cause: OSError | None
    ) -> StoragePermissionError:
        reason = f" ({cause.strerror})" if cause is not None and cause.strerror else ""
        return StoragePermissionError(
            f"Permission denied deleting {model_id}: TalkTuah (uid {os.geteuid()}) cannot "
            f"write to {path}{reason}. Files created by an engine container are often owned "
            f"by root: fix ownership with `sudo chown -R {os.geteuid()} {self.models_dir}` "
            "or make the models dir writable, then retry."
        )

    def _not_found(self, model_id: str) -> ModelNotFoundError:
        return ModelNotFoundError(
            f"Model not found: {model_id} is not in {self.models_dir}. "
            "GET /api/models/local lists what is downloaded; "
            f"POST /api/download-model?model_id={model_id}&auto=true fetches it."
        )

    def _describe(
        self,
        repo: CachedRepoInfo,
        active: str | None,
        facts: _Facts,
        has_partial: bool | None = None,
    ) -> LocalModel:
        if has_partial is None:
            has_partial = any((repo.repo_path / "blobs").glob("*.incomplete"))
        downloading = repo.repo_id in facts.downloading
        revisions = []
        for rev in sorted(repo.revisions, key=lambda r: r.last_modified, reverse=True):
            key = (repo.repo_id, rev.commit_hash)
            # Ours and verified: complete while every verified file is there. Ours and never
            # finished: incomplete. Not ours (hf download, a mounted cache): complete when no
            # transfer is under way in the repo.
            expected: frozenset[str] | None = frozenset()
            partial = has_partial or downloading
            if key in facts.verified:
                expected, partial = facts.verified[key], False
            elif key in facts.ours:
                expected = None
            revisions.append(self._describe_revision(rev, partial=partial, expected=expected))
        return LocalModel(
            model_id=repo.repo_id,
            size_bytes=repo.size_on_disk,
            revisions=revisions,
            last_modified=_iso(repo.last_modified),
            active=repo.repo_id == active,
            complete=any(r.complete for r in revisions),
            path=str(repo.repo_path),
        )

    def _describe_revision(
        self, rev: CachedRevisionInfo, *, partial: bool, expected: frozenset[str] | None
    ) -> LocalRevision:
        # The library builds every file_path under snapshot_path: slicing the string is the
        # same as relative_to() at a fraction of its cost (it shows at hundreds of models).
        prefix = len(str(rev.snapshot_path)) + 1
        files = sorted(str(f.file_path)[prefix:].replace(os.sep, "/") for f in rev.files)
        return LocalRevision(
            commit_hash=rev.commit_hash,
            refs=sorted(rev.refs),
            size_bytes=rev.size_on_disk,
            files=files,
            last_modified=_iso(rev.last_modified),
            complete=bool(files)
            and not partial
            and expected is not None
            and expected <= set(files)
            and _shards_present(rev.snapshot_path, files),
        )


def _shards_present(snapshot: Path, files: list[str]) -> bool:
    """A sharded checkpoint is complete only when every shard its index names is here.

    This catches a snapshot cut short by a crash or by `hf download` being interrupted:
    the index arrives first (it is small) and the shards may never follow.
    """
    present = set(files)
    for index_name in _WEIGHT_INDEXES:
        if index_name not in present:
            continue
        try:
            weight_map = json.loads((snapshot / index_name).read_text())["weight_map"]
        except (OSError, ValueError, KeyError, TypeError):
            return False
        if not set(weight_map.values()) <= present:
            return False
    return True
