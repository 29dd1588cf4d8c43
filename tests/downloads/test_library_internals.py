"""huggingface_hub internals the resumable transfer relies on (downloads/transfer.py).

Why this exists: the library has no public API for "put this verified file into the cache as
you would", so transfer.py uses its private helpers to keep the layout identical. A release
that renames or changes one of them must fail here, next to the `huggingface-hub<2.5` pin in
pyproject, rather than corrupt a cache. The last test pins the reason the transfer exists at
all: the library's own temp file is process-unique, so it cannot be resumed.
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path

import huggingface_hub
import huggingface_hub.file_download as fd
from huggingface_hub import scan_cache_dir
from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status
from packaging.version import Version


def test_the_pinned_version() -> None:
    assert Version("2.4") <= Version(huggingface_hub.__version__) < Version("2.5")


def test_repo_folder_name_and_pointer_path_keep_the_cache_layout(tmp_path: Path) -> None:
    folder = fd.repo_folder_name(repo_id="org/name", repo_type="model")
    assert folder == "models--org--name"
    pointer = fd._get_pointer_path(str(tmp_path / folder), "a" * 40, os.path.join("sub", "f.bin"))
    assert pointer == str(tmp_path / folder / "snapshots" / ("a" * 40) / "sub" / "f.bin")


def test_move_link_and_ref_make_a_cache_scan_cache_dir_reads(tmp_path: Path) -> None:
    storage = tmp_path / "models--org--name"
    (storage / "blobs").mkdir(parents=True)
    partial = storage / "blobs" / "x.partial"
    partial.write_bytes(b"hello")
    blob = storage / "blobs" / ("b" * 40)
    fd._chmod_and_move(partial, blob)
    pointer = Path(fd._get_pointer_path(str(storage), "c" * 40, "f.txt"))
    pointer.parent.mkdir(parents=True)
    fd._create_symlink(str(blob), str(pointer), new_blob=False)
    fd._cache_commit_hash_for_specific_revision(str(storage), "main", "c" * 40)
    assert pointer.is_symlink() and pointer.read_bytes() == b"hello"
    assert not os.path.isabs(os.readlink(pointer)), "links stay relative (movable cache)"
    (repo,) = scan_cache_dir(tmp_path).repos
    (revision,) = repo.revisions
    assert revision.refs == {"main"} and repo.size_on_disk == 5


def test_normalize_etag_and_the_http_helpers() -> None:
    assert fd._normalize_etag('W/"abc"') == "abc" and fd._normalize_etag('"abc"') == "abc"
    assert "user-agent" in {k.lower() for k in build_hf_headers(token=False)}
    assert hasattr(get_session(), "stream")
    assert "response" in inspect.signature(hf_raise_for_status).parameters


def test_the_library_still_writes_a_process_unique_temp_file() -> None:
    """If this fails, the library may resume across processes itself: re-read PR #4228."""
    source = inspect.getsource(fd._download_to_tmp_and_move)
    assert "uuid.uuid4()" in source and "tmp_path.unlink(missing_ok=True)" in source
