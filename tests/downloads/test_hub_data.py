"""Hub data checked before it becomes a path (downloads/hub_data.py, confine.py).

Why: huggingface_hub 2.4 builds `blobs/<ETag>`, `snapshots/<X-Repo-Commit>` and
`refs/<revision>` from server and user data without checking them. These tests hold the
grammar checks and the one library internal the guard relies on: `hf_hub_download` looks up
`file_download.get_hf_file_metadata` as a module global at call time.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import huggingface_hub.file_download as hf_file_download
import pytest
from huggingface_hub import HfApi, hf_hub_download, scan_cache_dir

from talktuah.confine import inside, without_outside
from talktuah.downloads.hub_data import (
    Expected,
    check_filename,
    expect,
    guard_library_metadata,
    validate_revision,
)
from talktuah.errors import HubDataError, InvalidRevisionError

from ..support.hostile_hub import HostileHub, Victims, serve_hostile_hub
from ..support.hub import make_files


@pytest.fixture
def hostile(tmp_path: Path, hf_cache: Path) -> Iterator[HostileHub]:
    yield from serve_hostile_hub(tmp_path / "hostile-hub")


@pytest.mark.parametrize(
    "revision", ["main", "v1.0", "refs/pr/1", "feature/x-y_z", "a" * 40, "release-2024.01"]
)
def test_valid_revisions_pass(revision: str) -> None:
    assert validate_revision(revision) == revision


@pytest.mark.parametrize(
    "revision",
    ["", "..", "../x", "a/../b", "/abs", "a//b", "x/", "-rf", "main\n", "a b", "a\x00",
     "x.lock", "x.", ".hidden", "a/.b", "a@{1}", "@", "a~1", "a^", "a:b", "a?", "a*", "a[",
     "a\\b", "r" * 256],
)  # fmt: skip
def test_invalid_revisions_are_refused(revision: str) -> None:
    with pytest.raises(InvalidRevisionError, match="revision"):
        validate_revision(revision)


@pytest.mark.parametrize(
    "name", ["../x", "a/../../x", "/etc/passwd", "C:/x", "a\\b", "a//b", "./a", "a/", "x\x1b[31m"]
)
def test_hostile_file_names_are_refused(name: str) -> None:
    with pytest.raises(HubDataError, match="The hub at http://mirror"):
        check_filename(name, endpoint="http://mirror", model_id="org/m")


def test_nested_file_names_pass() -> None:
    assert check_filename("onnx/model.onnx", endpoint=None, model_id="o/m") == "onnx/model.onnx"


def test_guard_checks_the_librarys_own_head(
    hostile: HostileHub, hf_cache: Path, tmp_path: Path
) -> None:
    """The library's HEAD goes through our check: the internal this relies on still holds."""
    guard_library_metadata()
    guard_library_metadata()  # idempotent: one wrapper, not two
    assert getattr(hf_file_download.get_hf_file_metadata, "talktuah_guard", False)
    assert not getattr(hf_file_download.get_hf_file_metadata.__wrapped__, "talktuah_guard", False)
    victims = Victims.plant(tmp_path / "outside")
    files = make_files(n_files=1, size=4096, seed=3)
    sha = hostile.add_repo("org/m", files)
    weights = next(p for p in files if p.endswith(".safetensors"))
    hostile.lies.etag[weights] = "../../../outside/written"
    with pytest.raises(HubDataError, match="ETag"):
        hf_hub_download("org/m", weights, revision=sha, cache_dir=hf_cache, endpoint=hostile.url)
    assert victims.untouched()


def test_guard_compares_with_what_planning_saw(hostile: HostileHub, hf_cache: Path) -> None:
    guard_library_metadata()
    files = {"config.json": b'{"a": 1}'}
    sha = hostile.add_repo("org/m", files)
    hostile.lies.etag["config.json"] = "1" * 40  # a valid sha1, but not this file's blob id
    expected = Expected("config.json", sha, hostile.file_info("org/m", "config.json").etag,
                        False, hostile.url)  # fmt: skip
    with expect(expected), pytest.raises(HubDataError, match="file list gave"):
        hf_hub_download("org/m", "config.json", revision=sha, cache_dir=hf_cache,
                        endpoint=hostile.url)  # fmt: skip
    hostile.lies.etag.clear()
    with expect(expected):
        path = hf_hub_download("org/m", "config.json", revision=sha, cache_dir=hf_cache,
                               endpoint=hostile.url)  # fmt: skip
    assert Path(path).read_bytes() == files["config.json"]


def test_model_info_blob_ids_are_git_sha1s(hostile: HostileHub) -> None:
    """What the non-LFS check compares against: sha1 of `blob <size>\\0` + content."""
    data = b'{"model_type": "llama"}'
    hostile.add_repo("org/m", {"config.json": data})
    info = HfApi(endpoint=hostile.url).model_info("org/m", files_metadata=True)
    (sibling,) = info.siblings or []
    assert sibling.blob_id == hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def test_delete_never_removes_a_blob_outside(tmp_path: Path, hf_cache: Path) -> None:
    """A snapshot link to a file outside: deleting the model removes the link, not the file."""
    victims = Victims.plant(tmp_path / "outside")
    repo = hf_cache / "models--org--m"
    snap = repo / "snapshots" / ("a" * 40)
    snap.mkdir(parents=True)
    (repo / "blobs").mkdir()
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("a" * 40)
    (snap / "config.json").symlink_to(tmp_path / "outside" / "victim.txt")
    other = repo / "snapshots" / ("b" * 40)  # a second revision: the repo folder itself stays
    other.mkdir()
    (repo / "blobs" / "c").write_text("{}")
    (other / "config.json").symlink_to("../../blobs/c")
    assert not inside(hf_cache, snap / "config.json")
    info = scan_cache_dir(hf_cache)
    strategy = info.delete_revisions("a" * 40)
    assert any(not inside(hf_cache, b) for b in strategy.blobs), "the library would delete it"
    without_outside(strategy, hf_cache).execute()
    assert not snap.exists()
    assert victims.untouched()
