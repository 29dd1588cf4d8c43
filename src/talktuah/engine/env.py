"""What every engine process TalkTuah launches gets: environment, executable, address."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path

from ..config import Settings

_HF_ENV_WE_REPLACE = (
    "HF_ENDPOINT",
    "HF_HOME",
    "HF_HUB_CACHE",
    "HF_TOKEN",
    "HUGGING_FACE_HUB_TOKEN",
    "TRANSFORMERS_CACHE",
    "PROXY_API_KEY",  # the engine never needs TalkTuah's API key
)
# The engine never gets a Hub token, not even TalkTuah's own: it runs offline on files
# TalkTuah downloaded, so a token there could only leak (a compromised engine, a model's
# remote code, `/proc/<pid>/environ` read by the engine's user, a crash dump).


def engine_env(settings: Settings, base_env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The engine's environment: our models dir, offline, no token, no telemetry; PATH etc.
    kept.

    Offline because TalkTuah downloads models (with progress, checksums and disk checks);
    an engine that fetched missing files itself would bypass all of that, and an offline
    engine has no use for `HF_TOKEN`.
    """
    env = dict(os.environ if base_env is None else base_env)
    for name in _HF_ENV_WE_REPLACE:
        env.pop(name, None)
    env.update(
        {
            "HF_HUB_CACHE": str(settings.models_dir),
            "HF_HOME": str(settings.engine_dir / "hf-home"),
            "HF_HUB_OFFLINE": "1",
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "VLLM_NO_USAGE_STATS": "1",  # vLLM reports usage unless told not to
            "DO_NOT_TRACK": "1",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def find_executable(executable: str) -> str | None:
    """A path as given, else the script beside this interpreter (same venv), else PATH."""
    if os.sep in executable:
        path = Path(executable)
        return str(path) if path.is_file() and os.access(path, os.X_OK) else None
    beside = Path(sys.executable).with_name(executable)
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which(executable)


def url_host(host: str) -> str:
    """The host to connect to for a server bound to `host` (wildcards mean this machine)."""
    if host in ("", "0.0.0.0", "::", "[::]"):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host and not host.startswith("[") else host
