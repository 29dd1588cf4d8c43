"""Filesystem conditions that are awkward to create, made real for a test."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def read_only(path: Path) -> Iterator[None]:
    """Make `path` truly unwritable for this process for the duration of the block.

    chmod is no obstacle to root, and tests often run as root (CI does), so as root the
    directory is bind-mounted read-only over itself: writes then fail with EROFS exactly as
    on a read-only volume. As another user, removing the write bits is enough.
    """
    if os.geteuid() != 0:
        modes = {p: p.stat().st_mode for p in [path, *path.rglob("*")] if not p.is_symlink()}
        for p, mode in modes.items():
            p.chmod(mode & ~0o222)
        try:
            yield
        finally:
            for p, mode in modes.items():
                p.chmod(mode)
        return
    mounted = subprocess.run(["mount", "--bind", str(path), str(path)], capture_output=True)
    if mounted.returncode != 0:
        pytest.fail(
            "this test needs a read-only directory; as root that takes a bind mount, which "
            f"failed here ({mounted.stderr.decode().strip()}). Run as a non-root user."
        )
    try:
        subprocess.run(
            ["mount", "-o", "remount,bind,ro", str(path)], check=True, capture_output=True
        )
        yield
    finally:
        subprocess.run(["umount", str(path)], check=True, capture_output=True)


def tree_snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under `root` with its size and mtime, to prove nothing was touched."""
    return {
        str(p.relative_to(root)): (p.lstat().st_size, p.lstat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
    }


@contextmanager
def small_filesystem(path: Path, size: str) -> Iterator[None]:
    """Mount a tmpfs of `size` (e.g. "4m") on `path`: a disk that really fills up."""
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.fail(f"mounting a tmpfs needs root here: {mounted.stderr.decode()}")
    try:
        yield
    finally:
        subprocess.run(["umount", str(path)], check=True, capture_output=True)
