"""Health checks behind the public `/api/healthz`: states only, never paths or secrets."""

from __future__ import annotations

import os
import shutil
import sqlite3
from datetime import UTC, datetime
from typing import Any

from .engine.base import EngineState
from .services import Services

NEARLY_FULL_FRACTION = 0.05  # less than 5 % free ...
NEARLY_FULL_BYTES = 1024**3  # ... and less than 1 GiB free


def check_health(services: Services) -> tuple[str, dict[str, Any]]:
    """(`healthy` | `degraded` | `unhealthy`, the body of /api/healthz)."""
    details: dict[str, str] = {}
    try:
        services.state.query("SELECT 1")
        details["database"] = "ok"
    except sqlite3.Error as exc:
        details["database"] = f"error: {type(exc).__name__}"
    if details["database"] == "ok":
        try:
            services.state.set_meta("health_probe", datetime.now(UTC).isoformat())
        except sqlite3.Error:
            details["database"] = "not writable"
    models_dir = services.settings.models_dir
    if not models_dir.is_dir():
        details["models_dir"] = "missing"
    elif not os.access(models_dir, os.W_OK):
        details["models_dir"] = "read-only"
    else:
        details["models_dir"] = "ok"
    details["disk"] = _disk(models_dir if models_dir.is_dir() else services.settings.home)
    engine = services.engine
    ready = engine.state == EngineState.READY
    details["engine"] = f"{engine.driver.name}: {engine.state}"
    if details["database"].startswith("error"):
        health = "unhealthy"
    elif not ready or any(details[k] != "ok" for k in ("database", "models_dir", "disk")):
        health = "degraded"
    else:
        health = "healthy"
    return health, {
        "status": health,
        "model_loaded": ready,
        "upstream_healthy": ready,
        "details": details,
    }


def _disk(path: os.PathLike[str]) -> str:
    try:
        usage = shutil.disk_usage(path)
    except OSError:
        return "unknown"
    if usage.free < NEARLY_FULL_BYTES and usage.free < usage.total * NEARLY_FULL_FRACTION:
        return f"nearly full ({usage.free * 100 // max(usage.total, 1)}% free)"
    return "ok"
