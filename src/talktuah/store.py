"""The models dir: a standard Hugging Face hub cache that TalkTuah lists and prunes.

Keeping the library's layout (`models--org--name/{blobs,snapshots,refs}`) means a vLLM
container that mounts the same directory with `HF_HOME` set finds every model we pulled, and
`hf download` / `hf cache ls` work on it too. Listing and deletion go through
`huggingface_hub`'s cache manager, never through paths we build by hand.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from huggingface_hub import (
    CachedFileInfo,
    CachedRepoInfo,
    CachedRevisionInfo,
    HFCacheInfo,
    scan_cache_dir,
)

from .confine import without_outside
from .errors import (
    ModelBusyError,
    ModelInUseError,
    ModelNotFoundError,
    StoragePermissionError,
)
from .jobs_table import JobStore

# re-exported: callers name the model id checks from store, as before model_id.py (engine/
# and downloads/ import validate_model_ref from here; it is `ModelId(...)`)
from .model_id import MAX_MODEL_ID_LENGTH as MAX_MODEL_ID_LENGTH
from .model_id import ModelId as ModelId
from .model_id import validate_model_id as validate_model_id
from .model_id import validate_model_ref as validate_model_ref
from .quants import (
    Quant,
    available,
    default_quant,
    is_gguf_repo,
    mmproj_of,
    with_tag,
)
from .scan_cache import ModelIds, ScanCache
from .state import StateDB
from .verified import RevisionKey, VerifiedRevisions

logger = logging.getLogger(__name__)
_List = list  # `list` in ModelStore's annotations would name its method

_WEIGHT_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")


def repo_of(model_id: str) -> str:
    """The repo id of a (validated) model id: what the cache, the Hub and jobs' files key on."""
    return model_id.partition(":")[0]


def engine_for(engine: str, model_format: str) -> str:
    """The engine that will run a model of this format: under `auto` GGUF models run on
    llama.cpp and the others on transformers; any other setting forces its engine."""
    if engine != "auto":
        return engine
    return "llamacpp" if model_format == "gguf" else "transformers"


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
    """One servable model: a whole repo, or one quant of a GGUF repo (`org/repo:Q4_K_M`,
    with `quant` set and its revisions' `files` limited to that quant and its projector)."""

    model_id: str
    size_bytes: int
    revisions: list[LocalRevision]
    last_modified: str
    active: bool
    complete: bool
    path: str
    repo_id: str = ""
    format: str = "safetensors"  # "gguf", or "safetensors" for a Transformers checkpoint
    quant: str | None = None
    engine: str = "transformers"

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

    def __init__(self, models_dir: Path, state: StateDB, *, engine: str = "auto") -> None:
        self.models_dir = models_dir
        self.state = state
        self.engine = engine  # the engine setting: which engine each listed model runs on
        self.jobs = JobStore(state)
        self.verified = VerifiedRevisions(state)
        self.scans = ScanCache(models_dir, self._scan_once)
        self.ids = ModelIds(models_dir)
        # The last listing and what it was built from: reused while the scan object, the
        # active model and the state DB's facts are all the same.
        self._listed: tuple[HFCacheInfo, str | None, _Facts, list[LocalModel]] | None = None

    def _facts(self) -> _Facts:
        """Keyed by repo id: a job for `org/repo:Q8_0` writes into `org/repo`'s folder."""
        return _Facts(
            downloading={repo_of(m) for m in self.jobs.live_model_ids()},
            ours={(repo_of(m), commit) for m, commit in self.jobs.targeted_revisions()},
            verified=self.verified.all(),
        )

    def active_download(self, model_id: str) -> str | None:
        """The live job writing `model_id`'s files: its own, one for the whole repo, or (for
        a whole repo) one for any of its quants."""
        repo_id = repo_of(model_id)
        job = self.jobs.live_for(model_id)
        if job is None and model_id != repo_id:
            job = self.jobs.live_for(repo_id)
        if job is None and model_id == repo_id:
            quants = sorted(m for m in self.jobs.live_model_ids() if repo_of(m) == repo_id)
            job = self.jobs.live_for(quants[0]) if quants else None
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
        """Every model with at least one snapshot, sorted by id: one entry per downloaded
        quant of a GGUF repo (`org/repo:Q4_K_M`), one per other repo."""
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
            model
            for repo in info.repos
            if repo.repo_type == "model" and repo.revisions
            for model in self._describe(repo, active, facts, has_partial=repo.repo_path in partial)
        ]
        models.sort(key=lambda m: m.model_id.lower())
        self._listed = (info, active, facts, models)
        return list(models)

    def get(self, model_id: str) -> LocalModel:
        """One model as listed. `org/repo:QUANT` is that quant; `org/repo` of a GGUF repo is
        the quant llama.cpp's rule picks among those here (complete ones first). A route's
        ModelId is taken as it is; a plain str is checked here (ModelId)."""
        model_id = ModelId(model_id)
        repo = self._find(self._scan(), repo_of(model_id))
        if repo is None:
            raise self._not_found(model_id)
        return self._pick(model_id, self._describe(repo, self.state.active_model, self._facts()))

    def exists(self, model_id: str) -> bool:
        try:
            self.get(model_id)
        except ModelNotFoundError:
            return False
        return True

    def _pick(self, model_id: str, entries: _List[LocalModel]) -> LocalModel:
        """The entry of a repo's entries that `model_id` names (see `get`)."""
        tagged = model_id != repo_of(model_id)
        if entries[0].quant is None:
            if tagged:
                raise self._not_found(model_id, here=[])
            return entries[0]
        if tagged:
            for entry in entries:
                if entry.model_id == model_id:
                    return entry
            raise self._not_found(model_id, here=[e.model_id for e in entries])
        candidates = [e for e in entries if e.complete] or entries
        quants = [Quant(e.quant or "", (e.model_id,), e.size_bytes) for e in candidates]
        return candidates[quants.index(default_quant(quants))]

    def delete(self, model_id: str, *, force: bool = False) -> DeletedModel:
        """Remove every revision of a model through the library's delete strategy.

        The strategy logs and skips files it may not remove, so writability is checked
        before anything is touched (nothing half-deleted) and the result is verified after.
        """
        model_id = ModelId(model_id)  # checked once: a route's ModelId is taken as it is
        repo_id = repo_of(model_id)
        job_id = self.active_download(model_id)
        if job_id is not None:
            raise ModelBusyError(
                f"{model_id} is being downloaded (job {job_id}). Cancel it first with "
                f"DELETE /api/downloads/{job_id}, then delete the model.",
                model_id=model_id,
                job_id=job_id,
            )
        info = self._scan(fresh=True)  # what is on disk now, not what was listed
        repo = self._find(info, repo_id)
        if info is None or repo is None:
            raise self._not_found(model_id)
        active = self.state.active_model
        if model_id != repo_id:
            entries = self._describe(repo, active, self._facts())
            entry = self._pick(model_id, entries)
            if len(entries) > 1:  # the last quant takes the repo (projector, README) with it
                return self._delete_quant(info, repo, entry, force=force)
        was_active = active is not None and repo_of(active) == repo_id
        if was_active and not force:
            raise ModelInUseError(
                f"{model_id} is the active model. Switch to another model first "
                "(POST /api/switch-model?model_id=...) or repeat the request with force=true.",
                model_id=model_id,
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
        self.verified.forget(repo_id)
        if was_active:
            self.state.active_model = None
        logger.info("deleted %s (%d bytes)", model_id, repo.size_on_disk)
        return DeletedModel(model_id=model_id, size_bytes=repo.size_on_disk, was_active=was_active)

    def _delete_quant(
        self, info: HFCacheInfo, repo: CachedRepoInfo, entry: LocalModel, *, force: bool
    ) -> DeletedModel:
        """Remove one quant's files (every revision's snapshot entries, and the blobs no other
        entry uses) through the library's delete strategy; the repo's other quants and its
        projector stay as they are, byte for byte."""
        model_id, repo_id = entry.model_id, repo.repo_id
        if entry.active and not force:
            raise ModelInUseError(
                f"{model_id} is the active model. Switch to another model first "
                "(POST /api/switch-model?model_id=...) or repeat the request with force=true.",
                model_id=model_id,
            )
        self._check_writable(model_id, repo.repo_path)
        doomed: dict[str, _List[CachedFileInfo]] = {}
        for rev in repo.revisions:
            files = {_relative(rev, f): f for f in rev.files}
            quant = next((q for q in available(list(files)) if q.tag == entry.quant), None)
            if quant is not None:
                doomed[rev.commit_hash] = [files[path] for path in quant.files]
        strategy = without_outside(
            info.delete_files(*(f for files in doomed.values() for f in files)), self.models_dir
        )
        try:
            strategy.execute()
        except OSError as exc:
            raise self._permission_error(model_id, repo.repo_path, exc) from exc
        if any(
            f.file_path.is_symlink() or f.file_path.exists() for fs in doomed.values() for f in fs
        ):
            raise self._permission_error(model_id, repo.repo_path, None)
        self.scans.invalidate()
        for rev in repo.revisions:
            if rev.commit_hash in doomed:
                paths = [_relative(rev, f) for f in doomed[rev.commit_hash]]
                self.verified.forget_files(repo_id, rev.commit_hash, paths)
        if entry.active:
            self.state.active_model = None
        freed = strategy.expected_freed_size
        logger.info("deleted %s (%d bytes)", model_id, freed)
        return DeletedModel(model_id=model_id, size_bytes=freed, was_active=entry.active)

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

    def _not_found(self, model_id: str, here: _List[str] | None = None) -> ModelNotFoundError:
        if here is not None:
            found = (
                f"of {repo_of(model_id)} only {', '.join(here)} is here"
                if here
                else f"{repo_of(model_id)} is here but is not a GGUF repo (no quants to pick)"
            )
            return ModelNotFoundError(
                f"Model not found: {model_id} is not in {self.models_dir} ({found}). "
                f"POST /api/download-model?model_id={model_id}&auto=true fetches it.",
                model_id=model_id,
            )
        return ModelNotFoundError(
            f"Model not found: {model_id} is not in {self.models_dir}. "
            "GET /api/models/local lists what is downloaded; "
            f"POST /api/download-model?model_id={model_id}&auto=true fetches it.",
            model_id=model_id,
        )

    def _describe(
        self,
        repo: CachedRepoInfo,
        active: str | None,
        facts: _Facts,
        has_partial: bool | None = None,
    ) -> _List[LocalModel]:
        """The repo's entries: one per quant here for a GGUF repo, else one."""
        if has_partial is None:
            has_partial = any((repo.repo_path / "blobs").glob("*.incomplete"))
        downloading = repo.repo_id in facts.downloading
        revisions: _List[_Revision] = []
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
            revisions.append(_Revision(rev, _files_of(rev), expected, partial))
        if is_gguf_repo(path for r in revisions for path in r.files):
            return self._describe_quants(repo, active, revisions)
        described = [self._describe_revision(r) for r in revisions]
        return [
            LocalModel(
                model_id=repo.repo_id,
                size_bytes=repo.size_on_disk,
                revisions=described,
                last_modified=_iso(repo.last_modified),
                active=repo.repo_id == active,
                complete=any(r.complete for r in described),
                path=str(repo.repo_path),
                repo_id=repo.repo_id,
                format="safetensors",
                engine=engine_for(self.engine, "safetensors"),
            )
        ]

    def _describe_quants(
        self, repo: CachedRepoInfo, active: str | None, revisions: _List[_Revision]
    ) -> _List[LocalModel]:
        """One entry per quant of a GGUF repo. A quant is complete in a revision when all its
        shards are here and, if we downloaded it, a finished job verified each of them (a
        download of another quant under way does not make it incomplete)."""
        found: dict[str, _List[tuple[_Revision, Quant, str | None]]] = {}
        for r in revisions:
            projector = mmproj_of(r.files)
            for quant in available(r.files):
                found.setdefault(quant.tag, []).append((r, quant, projector))
        entries = []
        for tag, places in found.items():
            described = []
            blobs: dict[Path, CachedFileInfo] = {}
            for r, quant, projector in places:
                by_path = {_relative(r.info, f): f for f in r.info.files}
                own = [by_path[p] for p in quant.files]
                blobs.update((f.blob_path, f) for f in own)
                verified = r.expected is not None and (
                    not r.expected or set(quant.files) <= r.expected
                )
                described.append(
                    LocalRevision(
                        commit_hash=r.info.commit_hash,
                        refs=sorted(r.info.refs),
                        size_bytes=sum(f.size_on_disk for f in own),
                        files=sorted([*quant.files, *([projector] if projector else [])]),
                        last_modified=_iso(max(f.blob_last_modified for f in own)),
                        complete=quant.whole and not r.partial and verified,
                    )
                )
            model_id = with_tag(repo.repo_id, tag)
            entries.append(
                LocalModel(
                    model_id=model_id,
                    size_bytes=sum(f.size_on_disk for f in blobs.values()),
                    revisions=described,
                    last_modified=max(r.last_modified for r in described),
                    active=model_id == active,
                    complete=any(r.complete for r in described),
                    path=str(repo.repo_path),
                    repo_id=repo.repo_id,
                    format="gguf",
                    quant=tag,
                    engine=engine_for(self.engine, "gguf"),
                )
            )
        if active == repo.repo_id:  # `org/repo` serves the quant the default rule picks
            chosen = self._pick(repo.repo_id, entries)
            entries = [dataclasses.replace(e, active=e is chosen) for e in entries]
        return entries

    def _describe_revision(self, r: _Revision) -> LocalRevision:
        rev, files, expected = r.info, r.files, r.expected
        return LocalRevision(
            commit_hash=rev.commit_hash,
            refs=sorted(rev.refs),
            size_bytes=rev.size_on_disk,
            files=files,
            last_modified=_iso(rev.last_modified),
            complete=bool(files)
            and not r.partial
            and expected is not None
            and expected <= set(files)
            and _shards_present(rev.snapshot_path, files),
        )


@dataclass(frozen=True)
class _Revision:
    """A cached revision with what the state DB says about it."""

    info: CachedRevisionInfo
    files: list[str]  # relative to the snapshot, sorted
    expected: frozenset[str] | None  # verified files; empty: not ours; None: ours, unfinished
    partial: bool


def _files_of(rev: CachedRevisionInfo) -> list[str]:
    # The library builds every file_path under snapshot_path: slicing the string is the
    # same as relative_to() at a fraction of its cost (it shows at hundreds of models).
    prefix = len(str(rev.snapshot_path)) + 1
    return sorted(str(f.file_path)[prefix:].replace(os.sep, "/") for f in rev.files)


def _relative(rev: CachedRevisionInfo, file: CachedFileInfo) -> str:
    return str(file.file_path)[len(str(rev.snapshot_path)) + 1 :].replace(os.sep, "/")


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
