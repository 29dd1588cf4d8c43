"""Download event streams take a key's stream slots, like streamed chat answers (issue 15).

`GET /api/downloads/{id}/events` holds a connection for as long as the job runs; without a
cap one key could open thousands. Run on the real `talktuah serve` process with a throttled
test hub, so the job stays live while the test opens, refuses and drops streams over real
sockets.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from ..support.constants import API_KEY, FAST_DOWNLOADS
from ..support.eventually import eventually
from ..support.hub import Hub, make_files
from ..support.server import TalkTuahProcess

pytestmark = pytest.mark.timeout(60)

GLOBAL_CAP = 2


@dataclass
class Stream:
    response: httpx.Response
    lines: Iterator[str]

    @property
    def status_code(self) -> int:
        return self.response.status_code


@pytest.fixture
def server(home: Path, hub: Hub, tmp_path: Path) -> Iterator[TalkTuahProcess]:
    env = {
        "HF_ENDPOINT": hub.url,
        "HF_HOME": str(tmp_path / "server-hf-home"),
        "TALKTUAH_MAX_STREAMS": str(GLOBAL_CAP),
        **FAST_DOWNLOADS,
    }
    proc = TalkTuahProcess(home, api_key=API_KEY, env=env)
    proc.start(timeout=20)
    try:
        yield proc
    finally:
        proc.stop()


@contextmanager
def events(proc: TalkTuahProcess, job_id: str, key: str) -> Iterator[Stream]:
    """An events stream on its own connection, its first event read; leaving the block
    closes that connection."""
    with (
        httpx.Client(base_url=proc.url, headers={"Authorization": f"Bearer {key}"}) as client,
        client.stream("GET", f"/api/downloads/{job_id}/events", timeout=10) as response,
    ):
        # Kept until the block ends: a line iterator dropped mid-stream closes the connection.
        lines = response.iter_lines()
        if response.status_code == 200:
            for line in lines:
                if line.startswith("data:"):
                    break
        yield Stream(response, lines)


def status_when_opened(proc: TalkTuahProcess, job_id: str, key: str) -> int:
    with events(proc, job_id, key) as response:
        return response.status_code


def wait_status(proc: TalkTuahProcess, job_id: str, key: str, want: int) -> None:
    eventually(
        lambda: status_when_opened(proc, job_id, key), lambda got: got == want, timeout=5,
        interval=0.1, what=f"the event stream opening with {want}",
    )  # fmt: skip


def test_event_streams_are_capped_per_key_and_given_back(server: TalkTuahProcess, hub: Hub) -> None:
    hub.add_repo("org/slow", make_files(n_files=1, size=2 * 1024 * 1024, seed=7))
    hub.faults.throttle_bps = 64 * 1024  # about 30 s: live for the whole test
    with server.client() as admin:
        job_id = admin.post(
            "/api/download-model", params={"model_id": "org/slow", "auto": "true"}
        ).json()["job_id"]
        created = admin.post(
            "/api/keys", json={"name": "watcher", "scopes": ["models:read"], "max_streams": 1}
        )
        assert created.status_code == 201, created.text
        key = created.json()["key"]

        # The key's own cap (1): a second stream is refused while the first is open.
        with events(server, job_id, key) as first:
            assert first.status_code == 200
            with events(server, job_id, key) as second:
                assert second.status_code == 429
                assert int(second.response.headers["Retry-After"]) >= 1
                assert "streams open" in second.response.read().decode()
            # Another key is not affected by this key's streams.
            assert status_when_opened(server, job_id, API_KEY) == 200
        # The client left: its slot comes back.
        wait_status(server, job_id, key, 200)

        # The global cap (TALKTUAH_MAX_STREAMS) for a key without one of its own.
        with events(server, job_id, API_KEY) as a, events(server, job_id, API_KEY) as b:
            assert (a.status_code, b.status_code) == (200, 200)
            assert status_when_opened(server, job_id, API_KEY) == 429

        # A stream that ends with its job gives its slot back too.
        with events(server, job_id, key) as open_stream:
            assert open_stream.status_code == 200
            assert admin.delete(f"/api/downloads/{job_id}").status_code == 200
            hub.faults.throttle_bps = None
            tail = "\n".join(open_stream.lines)
            assert '"status": "cancelled"' in tail
            # The stream has ended, the connection is still open: the slot is free.
            wait_status(server, job_id, key, 200)
