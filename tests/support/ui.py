"""Helpers of the dashboard tests, importable (tests/ui/conftest.py keeps the fixtures)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path

from .constants import API_KEY
from .engine import FAKE_ENGINE
from .server import TalkTuahProcess
from .tiny_model import install_in_cache


def model_files(repo_id: str) -> dict[str, bytes]:
    """Enough for the store to list the model complete; the stand-in engine never reads it."""
    return {
        "config.json": json.dumps({"model_type": "llama", "id": repo_id}).encode(),
        "model.safetensors": repo_id.encode() * 4096,
    }


def serve(home: Path, env: dict[str, str]) -> Iterator[TalkTuahProcess]:
    """A started `talktuah serve` on `home`, stopped when the generator closes."""
    proc = TalkTuahProcess(home, api_key=API_KEY, env=env)
    proc.start(timeout=20)
    try:
        yield proc
    finally:
        proc.stop(timeout=5)


def serve_stand_in(
    root: Path, installed: Iterable[str], *, default_model: str | None = "org/a", **env: str
) -> Iterator[TalkTuahProcess]:
    """The dashboard tests' server: `talktuah serve` on `root/home` (its HF_HOME
    `root/hf-home`) with `installed` models downloaded and the stand-in engine speaking as
    `transformers serve`, health-checked every 0.5 s and stopped within 3 s, serving
    `default_model` at start. `env` adds to that or overrides it (FAKE_ENGINE_*, HF_ENDPOINT,
    ...); the server stops when the generator closes."""
    home = root / "home"
    for repo_id in installed:
        install_in_cache(home / "models" / "hub", repo_id, model_files(repo_id))
    common = {
        "HF_HOME": str(root / "hf-home"),
        "TALKTUAH_ENGINE": "transformers",  # the stand-in speaks as `transformers serve`
        "TALKTUAH_ENGINE_EXECUTABLE": str(FAKE_ENGINE),
        "TALKTUAH_ENGINE_HEALTH_INTERVAL": "0.5",
        "TALKTUAH_ENGINE_STOP_TIMEOUT": "3",
    }
    if default_model is not None:
        common["DEFAULT_MODEL"] = default_model
    yield from serve(home, common | env)
