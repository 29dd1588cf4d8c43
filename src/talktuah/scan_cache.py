"""`scan_cache_dir`, redone only when the models dir has changed.

The dashboard, the CLI and n8n flows list models often; the cache changes rarely (a download
finishes, a model is deleted, someone runs `hf download` beside us). `scan_cache_dir` stats
and resolves every file on every call — 150 ms at 500 models here — while noticing a change
needs only the directories: in the hub cache layout every change that matters adds, removes
or renames a directory entry (blobs land by rename, snapshots are symlinks, deletion removes
entries), and that bumps the mtime of the directory holding it. `refs/*` files are the one
thing rewritten in place, so their own mtime and size are part of the fingerprint too.

huggingface_hub has no such cache (scan_cache_dir always walks everything), hence this module.

Filesystems with coarse timestamps (FAT: 2 s, some network mounts: 1 s) could hide a change
made in the same tick as the fingerprint; as git does with its "racy" index entries, a
fingerprint holding any timestamp younger than `RACY_SECONDS` is never trusted.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from huggingface_hub import HFCacheInfo

RACY_SECONDS = 2.0

Fingerprint = tuple[tuple[str, int, int], ...]


def fingerprint(models_dir: Path, racy_seconds: float = RACY_SECONDS) -> tuple[Fingerprint, bool]:
    """(mtime of every directory, mtime and size of every ref file), and whether it is racy."""
    entries: list[tuple[str, int, int]] = []
    newest = 0
    root = str(models_dir)
    stack = [root]
    while stack:
        directory = stack.pop()
        # ["", "models--org--name", "refs", "pr"] for <root>/models--org--name/refs/pr
        parts = directory[len(root) :].split(os.sep)
        try:
            stat = os.stat(directory)
            # blobs/ is flat: its own mtime covers every blob added, renamed or removed.
            children = [] if parts[2:] == ["blobs"] else list(os.scandir(directory))
        except FileNotFoundError:
            continue  # removed while we walked: the parent's mtime already says so
        entries.append((directory, stat.st_mtime_ns, 0))
        newest = max(newest, stat.st_mtime_ns)
        in_refs = len(parts) >= 3 and parts[2] == "refs"
        for child in children:
            if child.is_dir(follow_symlinks=False):
                if len(parts) == 1 and child.name == ".locks":
                    continue  # huggingface_hub's lock files: they come and go, change nothing
                stack.append(child.path)
            elif in_refs:
                try:
                    ref = child.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                entries.append((child.path, ref.st_mtime_ns, ref.st_size))
                newest = max(newest, ref.st_mtime_ns)
    entries.sort()
    racy = newest >= time.time_ns() - int(racy_seconds * 1e9)
    return tuple(entries), racy


class ScanCache:
    """The last scan of one models dir, reused while its fingerprint is unchanged."""

    def __init__(
        self,
        models_dir: Path,
        scan: Callable[[], HFCacheInfo],
        *,
        racy_seconds: float = RACY_SECONDS,
    ) -> None:
        self.models_dir = models_dir
        self.racy_seconds = racy_seconds
        self._scan = scan
        self._lock = threading.Lock()
        self._last: tuple[Fingerprint, HFCacheInfo] | None = None

    def get(self) -> HFCacheInfo:
        """The cache as it is now: the stored scan if nothing changed since, else a new one.

        The fingerprint is taken before the scan, so a change during the scan makes the
        next fingerprint differ and the next call scan again.
        """
        current, racy = fingerprint(self.models_dir, self.racy_seconds)
        last = self._last
        if last is not None and last[0] == current:
            return last[1]
        info = self._scan()
        with self._lock:
            self._last = None if racy else (current, info)
        return info

    def invalidate(self) -> None:
        """Forget the stored scan (after a change we made ourselves, to be safe)."""
        with self._lock:
            self._last = None


class ModelIds:
    """Which models have a snapshot, for listings that need only ids and counts.

    `/metrics` (public, scraped every few seconds) and `/api/model-status` need the set of
    models, not sizes or completeness; even the fingerprint above stats about ten entries per
    model (130 ms at 1,000 models here). This stats the models dir and each repo's
    `snapshots/` once: a snapshot added or removed changes that folder's mtime, a repo added
    or removed the models dir's. Racy timestamps are re-read, as above.
    """

    def __init__(self, models_dir: Path, *, racy_seconds: float = RACY_SECONDS) -> None:
        self.models_dir = models_dir
        self.racy_seconds = racy_seconds
        self._lock = threading.Lock()
        self._root_mtime: int | None = None
        self._repos: list[str] = []
        self._snapshots: dict[str, tuple[int, bool]] = {}

    def get(self) -> list[str]:
        """Model ids (`org/name`) with at least one snapshot, sorted case-insensitively."""
        racy_before = time.time_ns() - int(self.racy_seconds * 1e9)
        with self._lock:
            try:
                root_mtime = os.stat(self.models_dir).st_mtime_ns
            except FileNotFoundError:
                return []
            if root_mtime != self._root_mtime or root_mtime >= racy_before:
                self._repos = [
                    entry.name
                    for entry in os.scandir(self.models_dir)
                    if entry.name.startswith("models--") and entry.is_dir(follow_symlinks=False)
                ]
                self._root_mtime = root_mtime
            ids = []
            seen: dict[str, tuple[int, bool]] = {}
            for name in self._repos:
                snapshots = os.path.join(self.models_dir, name, "snapshots")
                try:
                    mtime = os.stat(snapshots).st_mtime_ns
                except (FileNotFoundError, NotADirectoryError):
                    continue
                cached = self._snapshots.get(name)
                if cached is not None and cached[0] == mtime and mtime < racy_before:
                    has_snapshot = cached[1]
                else:
                    has_snapshot = _has_subdir(snapshots)
                seen[name] = (mtime, has_snapshot)
                if has_snapshot:
                    ids.append(name[len("models--") :].replace("--", "/"))
            self._snapshots = seen
        return sorted(ids, key=str.lower)


def _has_subdir(path: str) -> bool:
    try:
        with os.scandir(path) as entries:
            return any(entry.is_dir() for entry in entries)
    except (FileNotFoundError, NotADirectoryError):
        return False
