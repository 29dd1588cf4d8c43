"""Helpers of the download tests, importable (tests/downloads/conftest.py keeps the fixtures)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient

#: The `wait_for` fixture: poll a job until `done(job)` holds (default: it ended).
WaitFor = Callable[..., dict[str, Any]]


def start_download(client: TestClient, model_id: str, **params: Any) -> dict[str, Any]:
    """POST /api/download-model?auto=true and the 202's job."""
    response = client.post(
        "/api/download-model", params={"model_id": model_id, "auto": "true", **params}
    )
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    return body
