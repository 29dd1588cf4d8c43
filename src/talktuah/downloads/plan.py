"""Before a byte moves: what to fetch, what is already here, and whether it fits.

One `model_info(files_metadata=True)` call gives every file's size and, for LFS files, the
sha256 we verify against afterwards; the commit sha it returns pins the whole job to one
revision even if the branch moves while we download.

A GGUF repo (GGUF model files, no safetensors) holds one model in many quantizations, often
10-100x the size of one: for it, or whenever `org/repo:QUANT` names a tag, the plan is only
the chosen quant's files (every shard) plus the vision projector (quants.py), never the
whole repo.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import HfApi, get_hf_file_metadata, hf_hub_url, try_to_load_from_cache
from huggingface_hub.errors import HfHubHTTPError
from huggingface_hub.hf_api import RepoSibling
from huggingface_hub.utils import filter_repo_objects

from ..errors import HubNotFoundError, HubUnavailableError, InsufficientStorageError
from ..quants import Quant, available, default_quant, is_gguf_repo, mmproj_of, select
from ..sizes import format_bytes
from .hub_data import (
    check_blob_id,
    check_commit,
    check_filename,
    check_sha256,
    check_size,
    validate_revision,
)
from .hub_errors import hub_error
from .jobs import PlannedFile


@dataclass(frozen=True)
class DownloadPlan:
    commit_hash: str
    files: list[PlannedFile]
    cached: frozenset[str]
    quant: Quant | None = None  # the GGUF quant chosen, when the plan is one
    quants: tuple[Quant, ...] = ()  # every quant of a GGUF repo, with sizes

    @property
    def bytes_total(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def bytes_cached(self) -> int:
        return sum(f.size for f in self.files if f.path in self.cached)

    @property
    def bytes_needed(self) -> int:
        return self.bytes_total - self.bytes_cached


def plan_download(
    api: HfApi,
    model_id: str,
    revision: str,
    cache_dir: Path,
    *,
    allow_patterns: list[str] | None = None,
    ignore_patterns: list[str] | None = None,
    quant: str | None = None,
) -> DownloadPlan:
    """Ask the Hub for the file list; raise our errors with the fix in the message.

    `model_id` is the repo id; `quant` the tag of `org/repo:QUANT`. A GGUF repo's plan is one
    quant (the tag's, else llama.cpp's default) unless `allow_patterns` name the files
    instead; an unknown tag is UnknownQuantError (404, listing the quants with sizes).
    Everything in the answer that later becomes a path (the commit sha, file names) or is
    compared against (sha256, git blob ids, sizes) is checked here: see hub_data.py.
    """
    commit, all_siblings = repo_files(api, model_id, revision)
    siblings = all_siblings
    chosen: Quant | None = None
    quants: tuple[Quant, ...] = ()
    sizes = {s.rfilename: _listed_size(s) for s in all_siblings}
    if quant is not None or (is_gguf_repo(sizes) and not allow_patterns):
        selection = select(sizes, quant, repo_id=model_id)
        chosen, quants = selection.quant, tuple(available(sizes))
        wanted = set(selection.files)
        siblings = [s for s in all_siblings if s.rfilename in wanted]
    siblings = list(
        filter_repo_objects(
            siblings,
            allow_patterns=allow_patterns,
            ignore_patterns=ignore_patterns,
            key=lambda s: s.rfilename,
        )
    )
    if not siblings:
        raise HubNotFoundError(
            f"No file of {model_id}@{revision} matches allow_patterns={allow_patterns} / "
            f"ignore_patterns={ignore_patterns}. Loosen the patterns.",
            repo_id=model_id,
            revision=revision,
        )
    files = [_planned(api, model_id, commit, s) for s in siblings]
    cached = frozenset(
        f.path for f in files if cached_file(model_id, f.path, cache_dir, commit) is not None
    )
    if chosen is not None and chosen.size is None:  # a hub listing no sizes (olah)
        sized = {f.path: f.size for f in files}
        chosen = Quant(chosen.tag, chosen.files, sum(sized.get(p, 0) for p in chosen.files))
    return DownloadPlan(commit, files, cached, quant=chosen, quants=quants)


@dataclass(frozen=True)
class RepoQuants:
    """A repo's GGUF quants as the Hub lists them: what the pull form shows before a pull."""

    commit_hash: str
    gguf: bool  # a GGUF repo: a pull without a tag fetches `default`, not the whole repo
    quants: list[Quant]
    default: str | None
    mmproj: str | None


def repo_quants(api: HfApi, model_id: str, revision: str = "main") -> RepoQuants:
    """The quants of `model_id` (a repo id) at `revision`, with sizes, from one file list."""
    commit, siblings = repo_files(api, model_id, revision)
    sizes = {s.rfilename: _listed_size(s) for s in siblings}
    quants = available(sizes)
    return RepoQuants(
        commit_hash=commit,
        gguf=is_gguf_repo(sizes),
        quants=quants,
        default=default_quant(quants).tag if quants else None,
        mmproj=mmproj_of(sizes),
    )


def repo_files(api: HfApi, model_id: str, revision: str) -> tuple[str, list[RepoSibling]]:
    """The commit a revision is at and its files (names checked), from one model_info call;
    the Hub's failures as our errors, each with its fix."""
    validate_revision(revision)
    endpoint = api.endpoint
    try:
        info = api.model_info(model_id, revision=revision, files_metadata=True)
    except Exception as exc:
        translated = hub_error(exc, repo_id=model_id, revision=revision, endpoint=endpoint)
        if translated is None:
            raise
        raise translated from exc
    if not info.sha or info.siblings is None:
        raise HubUnavailableError(
            f"The Hub's answer for {model_id} lacks a commit sha or file list; "
            "is HF_ENDPOINT pointing at a Hugging Face compatible server?"
        )
    commit = check_commit(info.sha, endpoint=endpoint, what=f"{model_id}@{revision}")
    for sibling in info.siblings:
        check_filename(sibling.rfilename, endpoint=endpoint, model_id=model_id)
    return commit, list(info.siblings)


def _planned(api: HfApi, model_id: str, commit: str, sibling: RepoSibling) -> PlannedFile:
    """One sibling as a planned file, every value checked (the hub is not trusted)."""
    endpoint = api.endpoint
    what = f"{sibling.rfilename} in {model_id}"
    size = (
        sibling.size
        if sibling.size is not None
        else _size_from_head(api, model_id, commit, sibling)
    )
    if sibling.lfs is not None:
        sha256 = check_sha256(sibling.lfs.sha256, endpoint=endpoint, what=what)
        return PlannedFile(
            sibling.rfilename, check_size(size, endpoint=endpoint, what=what), sha256
        )
    return PlannedFile(
        sibling.rfilename,
        check_size(size, endpoint=endpoint, what=what),
        None,
        git_sha1=check_blob_id(sibling.blob_id, endpoint=endpoint, what=what),
    )


def _listed_size(sibling: RepoSibling) -> int | None:
    """A size from the file list as shown to people (quant sizes); the planned files' sizes
    are checked on their own (hub_data.check_size)."""
    size = sibling.size
    return size if isinstance(size, int) and not isinstance(size, bool) and size >= 0 else None


def cached_file(model_id: str, filename: str, cache_dir: Path, revision: str) -> Path | None:
    """Where `filename` of `model_id`@`revision` is in the cache, or None.

    `try_to_load_from_cache` checks that the snapshots folder exists and then lists it; a
    delete in between (another request, `hf cache delete`) makes it raise
    FileNotFoundError — found by bench/soak.py as a 500 on download requests. A file whose
    repo is being removed is not cached.
    """
    try:
        found = try_to_load_from_cache(model_id, filename, cache_dir=cache_dir, revision=revision)
    except FileNotFoundError:
        return None
    return Path(found) if isinstance(found, str) else None


def _size_from_head(api: HfApi, model_id: str, commit: str, sibling: RepoSibling) -> int:
    """Some Hub-compatible servers (olah, for one) list files without sizes: ask per file."""
    url = hf_hub_url(model_id, sibling.rfilename, revision=commit, endpoint=api.endpoint)
    try:
        size = get_hf_file_metadata(url, token=api.token).size
    except HfHubHTTPError as exc:
        raise HubUnavailableError(
            f"Could not learn the size of {sibling.rfilename} in {model_id}: {exc}. Retry later."
        ) from exc
    if size is None:
        raise HubUnavailableError(
            f"The Hub reports no size for {sibling.rfilename} in {model_id}; without it the "
            "download cannot be planned or verified. Is HF_ENDPOINT a Hugging Face compatible "
            "server?"
        )
    return size


def check_disk_space(
    plan: DownloadPlan, model_id: str, models_dir: Path, margin: int, in_partials: int = 0
) -> None:
    """Fail before downloading rather than on the last shard of a 100 GB model.

    `in_partials`: bytes of the plan's files already on disk in resumable partials; they are
    neither fetched nor written again, so a resumed download needs that much less.
    """
    models_dir.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(models_dir).free
    needed = max(0, plan.bytes_needed - in_partials)
    if needed + margin > free:
        raise InsufficientStorageError(
            f"Not enough disk space for {model_id}: it needs {_human(needed)} "
            f"(+{_human(margin)} margin) but {models_dir} has {_human(free)} free. "
            "Free space (DELETE /api/delete-model), download fewer files with "
            "allow_patterns, or point TALKTUAH_HOME at a larger disk."
        )


_human = format_bytes  # one size formatter for CLI, API text and dashboard (sizes.py)
