"""Pytest fixtures around the test hub (loaded via ``pytest_plugins``).

Why a plugin module rather than conftest: the hub is shared by unit, API and e2e tests, and
a plugin can be loaded explicitly (``-p tests.support.fixtures``) when running the hub's own
tests in isolation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import huggingface_hub.constants as hf_constants
import pytest

from .hub import Hub
from .hub import make_files as _make_files

MakeFiles = Callable[..., dict[str, bytes]]

#: huggingface_hub's knobs that TalkTuah sets process-wide (downloads.manager.configure_library),
#: as the library ships them: read when this plugin loads, before any test ran.
_LIBRARY_DEFAULTS = {
    name: getattr(hf_constants, name) for name in ("DOWNLOAD_CHUNK_SIZE", "HF_HUB_DOWNLOAD_TIMEOUT")
}


@dataclass(frozen=True)
class HubRepo:
    """A repo published on the test hub: what a correct download must reproduce."""

    repo_id: str
    files: dict[str, bytes]
    sha: str


@pytest.fixture
def hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An isolated HF home; returns its ``hub`` cache dir.

    Why patch ``huggingface_hub.constants`` too: the library reads ``HF_HOME``, ``HF_ENDPOINT``
    and friends once at import time, so setting env vars in a test only reaches subprocesses.
    Patching the constants keeps in-process calls that omit ``cache_dir`` out of the real
    ``~/.cache/huggingface`` as well.
    """
    hf_home = tmp_path / "hf-home"
    cache = hf_home / "hub"
    cache.mkdir(parents=True, exist_ok=True)
    for name in ("HF_TOKEN", "HF_ENDPOINT", "HF_HUB_OFFLINE", "HF_HUB_CACHE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HOME", str(hf_home))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    monkeypatch.setattr(hf_constants, "HF_HOME", str(hf_home))
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hf_constants, "HF_TOKEN_PATH", str(hf_home / "token"))
    monkeypatch.setattr(hf_constants, "HF_STORED_TOKENS_PATH", str(hf_home / "stored_tokens"))
    monkeypatch.setattr(hf_constants, "HF_HUB_DISABLE_TELEMETRY", True)
    monkeypatch.setattr(hf_constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    # An app built by an earlier test set these for the whole process (16 KiB chunks in the
    # download tests): each test starts from the library's own, and what it sets is undone.
    for name, value in _LIBRARY_DEFAULTS.items():
        monkeypatch.setattr(hf_constants, name, value)
    return cache


@pytest.fixture
def hub(tmp_path: Path, hf_cache: Path) -> Iterator[Hub]:
    """A started test hub rooted in ``tmp_path``; stopped (promptly) at teardown.

    Teardown fails the test if the hub itself crashed on a request (a hub bug must not pass
    as a client-side failure the test happened to expect).
    """
    yield from serve_hub(tmp_path / "test-hub")


def serve_hub(root: Path) -> Iterator[Hub]:
    """The body of every hub fixture: start, hand over, stop, then fail on a hub crash."""
    server = Hub(root)
    server.start()
    try:
        yield server
    finally:
        server.stop()
    assert not server.internal_errors, "test hub crashed:\n" + "\n".join(server.internal_errors)


@pytest.fixture
def make_files() -> MakeFiles:
    """``make_files(n_files=2, size=64 KiB, seed=0)`` -> content of a model-shaped repo."""
    return _make_files


@pytest.fixture
def hub_repo(hub: Hub) -> HubRepo:
    """``org/tiny-model`` (two 64 KiB safetensors shards + small JSON/README) on ``hub``."""
    files = _make_files(n_files=2, size=64 * 1024, seed=1)
    sha = hub.add_repo("org/tiny-model", files)
    return HubRepo("org/tiny-model", files, sha)
