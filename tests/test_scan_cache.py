"""ScanCache: a listing reuses the last scan only while nothing in the models dir changed."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
from huggingface_hub import HFCacheInfo, scan_cache_dir

from talktuah.scan_cache import ModelIds, ScanCache, fingerprint

from .support.tiny_model import install_in_cache


class CountingScan:
    """The real scan_cache_dir, counted."""

    def __init__(self, models_dir: Path) -> None:
        self.models_dir = models_dir
        self.calls = 0

    def __call__(self) -> HFCacheInfo:
        self.calls += 1
        return scan_cache_dir(self.models_dir)


def _age(models_dir: Path, seconds: float = 60) -> None:
    """Move every timestamp back, as if the cache had been written a minute ago."""
    past = time.time() - seconds
    for root, dirs, files in os.walk(models_dir):
        for name in [*dirs, *files]:
            os.utime(Path(root) / name, (past, past), follow_symlinks=False)
    os.utime(models_dir, (past, past))


def _repo_ids(info: HFCacheInfo) -> list[str]:
    return sorted(repo.repo_id for repo in info.repos)


def _summary(info: HFCacheInfo) -> object:
    """What a listing shows (the warnings hold exception objects, which never compare equal)."""
    return (
        sorted(
            (repo.repo_id, repo.size_on_disk, sorted(
                (rev.commit_hash, sorted(rev.refs), sorted(f.file_name for f in rev.files))
                for rev in repo.revisions
            ))
            for repo in info.repos
        ),
        sorted(str(f.file_path) for f in info.incomplete_files),
        [str(w) for w in info.warnings],
    )  # fmt: skip


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    models = tmp_path / "hub"
    install_in_cache(models, "org/alpha", {"config.json": b"{}", "model.safetensors": b"a" * 64})
    _age(models)
    return models


def test_an_unchanged_cache_is_scanned_once(models_dir: Path) -> None:
    scan = CountingScan(models_dir)
    cache = ScanCache(models_dir, scan)
    first = cache.get()
    assert cache.get() is first and cache.get() is first
    assert scan.calls == 1
    assert _repo_ids(first) == ["org/alpha"]


@pytest.mark.parametrize(
    "change",
    [
        "new model",
        "file removed from a snapshot",
        "blob added",
        "ref rewritten in place",
        "model removed",
    ],
)
def test_every_kind_of_change_is_seen(models_dir: Path, change: str) -> None:
    scan = CountingScan(models_dir)
    cache = ScanCache(models_dir, scan, racy_seconds=0)
    before = cache.get()
    repo = models_dir / "models--org--alpha"
    snapshot = next((repo / "snapshots").iterdir())
    if change == "new model":
        install_in_cache(models_dir, "org/beta", {"config.json": b"{}"})
    elif change == "file removed from a snapshot":
        (snapshot / "config.json").unlink()
    elif change == "blob added":
        (repo / "blobs" / "0123.incomplete").write_bytes(b"partial")
    elif change == "ref rewritten in place":
        # Same length, new content: only the file's own mtime says it changed.
        (repo / "refs" / "main").write_text("f" * len((repo / "refs" / "main").read_text()))
    elif change == "model removed":
        for root, dirs, files in os.walk(repo, topdown=False):
            for name in files:
                os.unlink(Path(root) / name)
            for name in dirs:
                os.rmdir(Path(root) / name)
        repo.rmdir()
    after = cache.get()
    assert scan.calls == 2, change
    assert after is not before
    assert _summary(after) == _summary(scan_cache_dir(models_dir))
    assert _summary(after) != _summary(before)


def test_lock_files_do_not_cause_a_rescan(models_dir: Path) -> None:
    locks = models_dir / ".locks" / "models--org--alpha"
    locks.mkdir(parents=True)  # huggingface_hub creates it with the first download
    _age(models_dir)
    scan = CountingScan(models_dir)
    cache = ScanCache(models_dir, scan, racy_seconds=0)
    cache.get()
    (locks / "abc.lock").touch()
    (locks / "abc.lock").unlink()
    (locks / "def.lock").touch()
    cache.get()
    assert scan.calls == 1


def test_a_change_hidden_by_a_coarse_clock_is_still_seen(models_dir: Path) -> None:
    """On a filesystem with 1-2 s timestamps a change can leave every mtime as it was.

    Simulated for real: the change is made, then the old timestamps are put back. While
    the timestamps are young, the fingerprint is racy and the scan is never reused.
    """
    repo = models_dir / "models--org--alpha"
    snapshot = next((repo / "snapshots").iterdir())
    now = time.time()
    os.utime(snapshot, (now, now))
    scan = CountingScan(models_dir)
    cache = ScanCache(models_dir, scan)  # the default racy window
    assert fingerprint(models_dir)[1] is True
    cache.get()
    (snapshot / "config.json").unlink()
    os.utime(snapshot, (now, now))  # the "coarse clock": same timestamp as before the change
    after = cache.get()
    assert scan.calls == 2
    files = {f.file_name for repo in after.repos for rev in repo.revisions for f in rev.files}
    assert "config.json" not in files


def test_invalidate_forces_the_next_scan(models_dir: Path) -> None:
    scan = CountingScan(models_dir)
    cache = ScanCache(models_dir, scan, racy_seconds=0)
    cache.get()
    cache.invalidate()
    cache.get()
    assert scan.calls == 2


def test_a_missing_models_dir_fingerprints_as_empty(tmp_path: Path) -> None:
    assert fingerprint(tmp_path / "absent") == ((), False)


def _with_revisions(models_dir: Path) -> list[str]:
    """What the store lists: repos with at least one snapshot."""
    return sorted(
        (r.repo_id for r in scan_cache_dir(models_dir).repos if r.revisions), key=str.lower
    )


def test_model_ids_follow_every_change_that_adds_or_removes_a_model(tmp_path: Path) -> None:
    """ModelIds (what /metrics and /api/model-status use) agrees with the full scan after
    each kind of change, old timestamps and racy ones alike."""
    models_dir = tmp_path / "hub"
    ids = ModelIds(models_dir)
    assert ids.get() == []
    install_in_cache(models_dir, "org/b", {"config.json": b"{}"})
    install_in_cache(models_dir, "Org/a", {"config.json": b"{}"})
    (models_dir / "models--org--empty" / "snapshots").mkdir(parents=True)
    (models_dir / ".locks").mkdir()
    assert ids.get() == ["Org/a", "org/b"]  # racy: re-read
    _age(models_dir)
    assert ids.get() == ["Org/a", "org/b"] == _with_revisions(models_dir)
    snapshots = models_dir / "models--org--b" / "snapshots"
    for snapshot in snapshots.iterdir():
        for link in snapshot.iterdir():
            link.unlink()
        snapshot.rmdir()
    _age(models_dir)
    assert ids.get() == ["Org/a"]
    install_in_cache(models_dir, "org/b", {"config.json": b"[]"})
    _age(models_dir)
    assert ids.get() == ["Org/a", "org/b"]
    shutil.rmtree(models_dir / "models--Org--a")
    _age(models_dir)
    assert ids.get() == ["org/b"] == _with_revisions(models_dir)


def test_model_ids_reuse_what_did_not_change(tmp_path: Path) -> None:
    """Unchanged and old: no repo's snapshots folder is listed again (only stat'ed)."""
    models_dir = tmp_path / "hub"
    for n in range(3):
        install_in_cache(models_dir, f"org/m{n}", {"config.json": str(n).encode()})
    _age(models_dir)
    ids = ModelIds(models_dir)
    assert len(ids.get()) == 3
    listed: list[str] = []
    real_scandir = os.scandir

    def counting(path: str) -> object:
        listed.append(str(path))
        return real_scandir(path)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(os, "scandir", counting)
        assert len(ids.get()) == 3
    assert listed == []
