"""Helpers of the dashboard tests, importable (tests/ui/conftest.py keeps the fixtures)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from .constants import API_KEY
from .server import TalkTuahProcess


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
