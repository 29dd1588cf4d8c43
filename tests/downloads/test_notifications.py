"""How clients learn about progress without polling: SSE events and the callback POST."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from talktuah.config import Settings
from talktuah.services import Services

from ..support.downloads import WaitFor, start_download
from ..support.eventually import eventually
from ..support.hub import Hub, make_files
from ..support.receiver import Receiver
from ..support.server import free_port


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The receivers here listen on loopback, which only the admin's allow-list opens."""
    return settings.model_copy(update={"callback_allow": ["127.0.0.1"]})


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    webhook = Receiver()
    yield webhook
    webhook.stop()


def test_sse_streams_progress_and_closes_at_the_end(client: TestClient, hub: Hub) -> None:
    hub.add_repo("org/sse", make_files(n_files=2, size=150_000, seed=31))
    hub.faults.throttle_bps = 600_000
    job = start_download(client, "org/sse")
    events: list[dict[str, Any]] = []
    kinds: list[str] = []
    with client.stream("GET", f"/api/downloads/{job['job_id']}/events") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        for line in stream.iter_lines():
            if line.startswith("event:"):
                kinds.append(line.split(":", 1)[1].strip())
            elif line.startswith("data:"):
                events.append(json.loads(line.split(":", 1)[1]))
    assert set(kinds) == {"progress"}
    assert len(events) >= 4
    assert events[-1]["status"] == "complete" and events[-1]["progress"] == 100
    downloading = [e["bytes_done"] for e in events if e["status"] == "downloading"]
    assert len(set(downloading)) >= 3 and downloading == sorted(downloading)
    keys = [(e["status"], e["bytes_done"], e["files_done"]) for e in events]
    assert len(keys) == len(set(keys)), "one event per change, no repeats"


def test_callback_gets_one_post_with_the_final_job(
    client: TestClient, hub: Hub, receiver: Receiver, wait_for: WaitFor
) -> None:
    hub.add_repo("org/hook", make_files(n_files=1, size=5_000, seed=32))
    job = start_download(client, "org/hook", callback_url=receiver.url)
    final = wait_for(job["job_id"])
    eventually(lambda: receiver.posts, timeout=5, interval=0.02, what="a callback POST")
    time.sleep(0.3)  # a second POST, if any were sent, would have arrived by now
    assert len(receiver.posts) == 1
    (post,) = receiver.posts
    assert post["job_id"] == job["job_id"] and post["status"] == "complete"
    assert post["bytes_done"] == final["bytes_total"]


def test_a_failing_callback_never_fails_the_job(
    client: TestClient,
    services: Services,
    hub: Hub,
    wait_for: WaitFor,
    caplog: pytest.LogCaptureFixture,
) -> None:
    services.downloads.callbacks.backoff = 0.01  # the retry, not its 1 s wait, is tested here
    hub.add_repo("org/nohook", make_files(n_files=1, size=5_000, seed=33))
    dead = f"http://127.0.0.1:{free_port()}/webhook"
    job = start_download(client, "org/nohook", callback_url=dead)
    assert wait_for(job["job_id"])["status"] == "complete"
    eventually(lambda: "callback for job" in caplog.text, timeout=10, what="the log line")
    assert f"callback for job {job['job_id']} to {dead} failed after 2 attempts" in caplog.text


def test_readers_see_only_the_callbacks_origin(
    client: TestClient, hub: Hub, receiver: Receiver, wait_for: WaitFor
) -> None:
    """n8n webhook paths are secrets: a models:read key must not learn them."""
    hub.add_repo("org/secret-hook", make_files(n_files=1, size=1_000, seed=34))
    job = start_download(client, "org/secret-hook", callback_url=receiver.url + "/a1b2c3")
    wait_for(job["job_id"])
    reader = client.post("/api/keys", json={"name": "r", "scopes": ["models:read"]}).json()
    headers = {"Authorization": f"Bearer {reader['key']}"}
    seen = client.get(f"/api/downloads/{job['job_id']}", headers=headers).json()
    assert seen["callback_url"] == receiver.url.rsplit("/", 1)[0] + "/…"
    listed = client.get("/api/downloads", headers=headers).json()["downloads"][0]
    assert "a1b2c3" not in json.dumps(listed)
    writer = client.get(f"/api/downloads/{job['job_id']}").json()
    assert writer["callback_url"] == receiver.url + "/a1b2c3"
