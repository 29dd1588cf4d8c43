"""Small model repos for the test hub, importable by any test (conftest files are not)."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path

#: The `put_model` fixture: publish a repo on the test hub and pull it into the models dir.
PutModel = Callable[..., Path]


def model_files(seed: int = 0, weights_size: int = 4096) -> dict[str, bytes]:
    """A small repo shaped like a model: config, an LFS weights file, a README."""
    rng = random.Random(seed)
    return {
        "config.json": json.dumps({"model_type": "llama", "seed": seed}).encode(),
        "model.safetensors": rng.randbytes(weights_size),
        "README.md": f"# test model {seed}\n".encode(),
    }
