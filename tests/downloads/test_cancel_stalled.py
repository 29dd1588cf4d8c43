"""A cancel of a stalled transfer acts within the stall timeout, not after a whole chunk.

Issue 15: cancellation was checked in the progress hook only, which huggingface_hub calls
once per DOWNLOAD_CHUNK_SIZE bytes. A hub dripping bytes (never silent long enough for the
read timeout, far below a chunk per stall timeout) held `DELETE /api/downloads/{id}` for the
whole chunk, and a silent hub for the library's five resumes. Both against the test hub's
fault injection, with the default 1 MiB chunk.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from talktuah.config import Settings

from ..support.downloads import WaitFor, start_download
from ..support.eventually import eventually
from ..support.hub import Hub, make_files

STALL_TIMEOUT = 2.0
WEIGHTS = "model.safetensors"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "download_chunk_bytes": 1024 * 1024,
            "download_stall_timeout": STALL_TIMEOUT,
            "rate_limit": "100000/minute",  # wait_for polls every 20 ms
        }
    )


def cancel_while_on_weights(
    client: TestClient, hub: Hub, wait_for: WaitFor, on_the_wire: Callable[[list[int]], bool]
) -> float:
    """Start org/slow, cancel once `on_the_wire(bytes sent by each GET of its weights in
    flight)` holds; seconds until `cancelled`."""
    hub.add_repo("org/slow", make_files(n_files=1, size=512 * 1024, seed=3))
    job = start_download(client, "org/slow")
    eventually(lambda: hub.sending(WEIGHTS), on_the_wire, what="the weights on the wire")
    started = time.monotonic()
    assert client.delete(f"/api/downloads/{job['job_id']}").status_code == 200
    ended: dict[str, Any] = wait_for(job["job_id"], timeout=60)
    took = time.monotonic() - started
    assert ended["status"] == "cancelled", ended
    return took


def test_a_cancel_during_a_dripping_transfer_is_prompt(
    client: TestClient, hub: Hub, wait_for: WaitFor
) -> None:
    hub.faults.throttle_bps = 16 * 1024  # 328 bytes every 20 ms: 32 s for the 512 KiB file
    took = cancel_while_on_weights(client, hub, wait_for, lambda sent: any(sent))
    assert took < STALL_TIMEOUT, f"the cancel took {took:.1f} s"
    hub.faults.throttle_bps = None
    sent = [r.bytes_sent for r in hub.requests(method="GET") if r.path == WEIGHTS]
    assert sent and 0 < max(sent) < 512 * 1024, sent  # it really was cut mid-file


def test_a_cancel_during_a_silent_transfer_waits_one_stall_timeout_at_most(
    client: TestClient, hub: Hub, wait_for: WaitFor
) -> None:
    """Every GET of the weights stalls: the read times out after the stall timeout and the
    library's own resume (a new request) is refused for the cancelled job."""
    hub.faults.stall(30, after_bytes=0, times=20, path_glob=WEIGHTS, method="GET")
    took = cancel_while_on_weights(client, hub, wait_for, lambda sent: len(sent) > 0)
    assert took < STALL_TIMEOUT + 1.5, f"the cancel took {took:.1f} s"
    assert len(hub.requests(method="GET", kind="resolve")) < 20
