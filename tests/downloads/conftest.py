"""Download tests run TalkTuah against the test hub with fast retry and progress settings."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from talktuah.config import Settings

from ..support.constants import API_KEY
from ..support.downloads import WaitFor
from ..support.eventually import eventually
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


@pytest.fixture
def wait_for(client: TestClient) -> WaitFor:
    """Poll a job until `done(job)` holds; fail with the last state after `timeout` s."""

    def wait(
        job_id: str, done: Callable[[dict[str, Any]], bool] | None = None, timeout: float = 20
    ) -> dict[str, Any]:
        check = done or (lambda j: j["status"] not in ("queued", "downloading"))
        job: dict[str, Any] = eventually(
            lambda: client.get(f"/api/downloads/{job_id}").json(),
            check,
            timeout=timeout,
            interval=0.02,
            what=f"job {job_id} reaching the expected state",
        )
        return job

    return wait
