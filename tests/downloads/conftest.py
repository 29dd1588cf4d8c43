"""Download tests run TalkTuah against the test hub with fast retry and progress settings."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from talktuah.config import Settings

from ..conftest import API_KEY
from ..support.hub import Hub


@pytest.fixture
def settings(home: Path, hub: Hub) -> Settings:
    return Settings(
        home=home,
        proxy_api_key=API_KEY,
        hf_endpoint=hub.url,
        download_retries=3,
        download_backoff_seconds=0.05,
        download_backoff_max_seconds=0.2,
        download_stall_timeout=1,
        download_chunk_bytes=16 * 1024,
        download_disk_margin_bytes=0,
        download_progress_interval=0.05,
        download_callback_retries=1,
        # The weights served here are random bytes no engine could load: downloads are tested
        # against an external engine nobody runs, so activate=true only marks the model active.
        # Activation that really loads a model is tested with the engine (tests/e2e).
        engine="external",
        engine_url="http://127.0.0.1:9",
    )


WaitFor = Callable[..., dict[str, Any]]


@pytest.fixture
def wait_for(client: TestClient) -> WaitFor:
    """Poll a job until `done(job)` holds; fail with the last state after `timeout` s."""

    def wait(
        job_id: str, done: Callable[[dict[str, Any]], bool] | None = None, timeout: float = 20
    ) -> dict[str, Any]:
        check = done or (lambda j: j["status"] not in ("queued", "downloading"))
        deadline = time.monotonic() + timeout
        while True:
            job: dict[str, Any] = client.get(f"/api/downloads/{job_id}").json()
            if check(job):
                return job
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} never reached the expected state: {job}")
            time.sleep(0.02)

    return wait


def start_download(client: TestClient, model_id: str, **params: Any) -> dict[str, Any]:
    response = client.post(
        "/api/download-model", params={"model_id": model_id, "auto": "true", **params}
    )
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    return body
