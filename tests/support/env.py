"""The environment every test runs in: none of the developer's (issue 20 moved it here from
tests/conftest.py so that fixtures wider than one test can have it too)."""

from __future__ import annotations

from pathlib import Path

import pytest

#: What TalkTuah's settings read from the environment (and so from a developer's shell).
ENV_WE_READ = (
    "TALKTUAH_HOME", "TALKTUAH_HOST", "TALKTUAH_PORT", "PROXY_API_KEY",
    "HF_TOKEN", "HF_ENDPOINT", "DEFAULT_MODEL",
)  # fmt: skip


def isolate_env(patch: pytest.MonkeyPatch, root: Path) -> None:
    """No TalkTuah variables, `.env` (the working directory is `root`) or
    ~/.cache/huggingface (HF_HOME is `root/hf-home`); undone when `patch` is."""
    for name in ENV_WE_READ:
        patch.delenv(name, raising=False)
    patch.setenv("HF_HOME", str(root / "hf-home"))
    patch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    patch.chdir(root)
