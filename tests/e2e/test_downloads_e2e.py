"""Downloads end to end: the real `talktuah serve` process pulling from the test hub.

Why these tests exist: the unit tests prove each piece of the download manager; these prove
the promises a user relies on hold in the real process, with the real `huggingface_hub`
client, over real sockets -- a kill -9 mid-download resumes without refetching finished
files, Hub hiccups are retried while a Hub that stays down ends in a clear error, the event
loop stays responsive while transfers run, SSE progress streams and ends, callbacks fire
exactly once (and never break a job), and a burst of identical requests makes one job.

Every wait is a bounded poll with the server's log in the failure message; every server is
stopped by a fixture, and the hub fixture stops the hub (waking stalled bodies).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from ..support.constants import API_KEY, FAST_DOWNLOADS
from ..support.eventually import eventually
from ..support.hub import Hub, make_files
from ..support.server import TalkTuahProcess, free_port

pytestmark = pytest.mark.timeout(60)

Json = dict[str, Any]
Serve = Callable[..., TalkTuahProcess]

LIVE = ("queued", "downloading")


# -- helpers --------------------------------------------------------------------------------


def log_tail(proc: TalkTuahProcess, n: int = 4000) -> str:
    """The server's log without its access lines (the polls would drown everything)."""
    lines = [ln for ln in proc.log().splitlines() if "talktuah.access" not in ln]
    return "\n--- talktuah log (tail) ---\n" + "\n".join(lines)[-n:]


def wait_for(
    check: Callable[[], Any], *, timeout: float, what: str, proc: TalkTuahProcess | None = None
) -> Any:
    """Poll `check` until it returns something truthy; fail with `what` and the log tail."""
    tail = (lambda: log_tail(proc)) if proc is not None else str
    return eventually(check, timeout=timeout, what=lambda: f"{what}{tail()}")


def api(proc: TalkTuahProcess, timeout: float = 10) -> httpx.Client:
    return httpx.Client(
        base_url=proc.url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=timeout
    )


def request_download(client: httpx.Client, model_id: str, **params: str) -> httpx.Response:
    return client.post(
        "/api/download-model", params={"model_id": model_id, "auto": "true"} | params
    )


def job(client: httpx.Client, job_id: str) -> Json:
    response = client.get(f"/api/downloads/{job_id}")
    response.raise_for_status()
    data: Json = response.json()
    return data


def wait_job(
    client: httpx.Client,
    proc: TalkTuahProcess,
    job_id: str,
    *,
    timeout: float = 15,
    until: Callable[[Json], bool] = lambda j: j["status"] not in LIVE,
    what: str = "the job to end",
) -> Json:
    """Poll one job until `until(job)` holds; the failure shows its last state and the log."""
    return eventually(
        lambda: job(client, job_id), until, timeout=timeout,
        what=lambda: f"{what}{log_tail(proc)}",
    )  # fmt: skip


def repo_dir(home: Path, model_id: str) -> Path:
    return home / "models" / "hub" / ("models--" + model_id.replace("/", "--"))


def incomplete_files(home: Path) -> list[Path]:
    """The library's temp files and TalkTuah's resumable partials (downloads/transfer.py)."""
    models = home / "models"
    return sorted([*models.rglob("*.incomplete"), *models.rglob("*.talktuah-partial")])


def snapshot_files(home: Path, model_id: str, sha: str) -> set[str]:
    snap = repo_dir(home, model_id) / "snapshots" / sha
    if not snap.is_dir():
        return set()
    return {p.relative_to(snap).as_posix() for p in snap.rglob("*") if not p.is_dir()}


def assert_snapshot_matches(
    home: Path, hub: Hub, model_id: str, sha: str, files: dict[str, bytes]
) -> None:
    """Every file of the repo is on disk, byte for byte as the hub serves it, none half-done."""
    snap = repo_dir(home, model_id) / "snapshots" / sha
    assert snapshot_files(home, model_id, sha) == set(files)
    for path in sorted(files):
        data = (snap / path).read_bytes()
        assert data == hub.file_bytes(model_id, path, sha) == files[path], path
    assert incomplete_files(home) == [], "a partial download was left behind"
    assert (repo_dir(home, model_id) / "refs" / "main").read_text().strip() == sha


def local_model(client: httpx.Client, model_id: str) -> Json | None:
    models = client.get("/api/models/local").json()["models"]
    return next((m for m in models if m["model_id"] == model_id), None)


# -- fixtures -------------------------------------------------------------------------------


@pytest.fixture
def serve(home: Path, hub: Hub, tmp_path: Path) -> Iterator[Serve]:
    """Start `talktuah serve` against the test hub; every process started is stopped at the end.

    Defaults keep progress smooth with small files (16 KiB chunks, progress written every
    0.1 s) and the disk margin small (the temp disk need not have 512 MiB free).
    """
    procs: list[TalkTuahProcess] = []

    def start(**env: str) -> TalkTuahProcess:
        full = {
            "HF_ENDPOINT": hub.url,
            "HF_HOME": str(tmp_path / "server-hf-home"),
            **FAST_DOWNLOADS,
        } | env
        proc = TalkTuahProcess(home, api_key=API_KEY, env=full)
        procs.append(proc)
        proc.start(timeout=20)
        return proc

    yield start
    for proc in procs:
        proc.stop(timeout=5)


class _Receiver(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _ReceiverServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with self.server.lock:
            self.server.received.append((self.path, json.loads(body)))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()


class _ReceiverServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    received: list[tuple[str, Json]]
    lock: threading.Lock


@pytest.fixture
def webhook() -> Iterator[_ReceiverServer]:
    """A tiny n8n-Webhook stand-in on loopback that records every POST it gets."""
    server = _ReceiverServer(("127.0.0.1", 0), _Receiver)
    server.received = []
    server.lock = threading.Lock()
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


# -- 1. kill -9 and resume --------------------------------------------------------------------


def test_kill9_mid_download_resumes_without_refetching_finished_files(
    hub: Hub, home: Path, serve: Serve
) -> None:
    model_id = "org/resume"
    files = make_files(n_files=5, size=400_000, seed=11)
    sha = hub.add_repo(model_id, files)
    shards = sorted(p for p in files if p.endswith(".safetensors"))
    hub.faults.throttle_bps = 400_000  # ~1 s per shard, ~5 s for the whole repo

    proc = serve()
    with api(proc) as client:
        accepted = request_download(client, model_id)
        assert accepted.status_code == 202, accepted.text
        job_id = accepted.json()["job_id"]

        # README.md and config.json come first (sorted), so files_done >= 4 means two shards
        # are complete; the partial file proves a third is in flight when we pull the plug.
        wait_for(
            lambda: (
                job(client, job_id)["files_done"] >= 4
                and any(f.stat().st_size > 0 for f in incomplete_files(home))
            ),
            timeout=15,
            what="two shards done and a third in flight",
            proc=proc,
        )
    proc.kill9()

    done_before = snapshot_files(home, model_id, sha)
    assert set(shards[:2]) <= done_before, done_before
    orphans = incomplete_files(home)
    assert orphans, "expected the interrupted shard's .incomplete file after kill -9"
    with sqlite3.connect(home / "state.db") as db:
        row = db.execute(
            "SELECT status, attempts, bytes_done FROM download_jobs WHERE id = ?", (job_id,)
        ).fetchone()
    assert row[:2] == ("downloading", 1), row
    bytes_before_kill = row[2]
    assert bytes_before_kill >= 800_000, row

    _ = hub.log  # let the request cut by the kill land in the log before clearing it
    hub.clear_log()
    hub.faults.throttle_bps = None

    proc2 = serve()
    with api(proc2) as client:
        first = job(client, job_id)
        assert first["bytes_done"] >= bytes_before_kill, "progress went backwards on restart"
        final = wait_job(client, proc2, job_id, what="the resumed job to finish")
        assert final["status"] == "complete", final
        assert final["progress"] == 100 and final["files_done"] == len(files)
        assert final["bytes_done"] == final["bytes_total"] == sum(map(len, files.values()))
        assert final["attempts"] == 2, final

        refetched = set(hub.fetched_files(model_id))
        assert refetched.isdisjoint(done_before), f"refetched finished files: {refetched}"
        assert refetched == set(files) - done_before
        # The shard in flight continued from its partial (issue 19); the others started
        # from their first byte.
        ranged = [r for r in hub.requests(method="GET", kind="resolve") if r.range is not None]
        assert len({r.path for r in ranged}) == 1 and ranged[0].path not in done_before, ranged
        assert all(r.range and not r.range.startswith("bytes=0-") for r in ranged), ranged

        assert_snapshot_matches(home, hub, model_id, sha, files)
        assert not any(p.exists() for p in orphans)
        listed = local_model(client, model_id)
        assert listed is not None and listed["complete"] is True, listed
        jobs = client.get("/api/downloads").json()["downloads"]
        assert [j["job_id"] for j in jobs if j["model_id"] == model_id] == [job_id]


# -- 2. faults through the real server --------------------------------------------------------


def test_hub_faults_are_retried_and_the_job_completes(hub: Hub, home: Path, serve: Serve) -> None:
    """A 5xx burst, a connection cut mid-body and a stall past the stall timeout, all in one
    job: each is survived inside one attempt and the files still verify."""
    model_id = "org/faulty"
    files = make_files(n_files=3, size=200_000, seed=12)
    sha = hub.add_repo(model_id, files)
    shard1, shard2, shard3 = sorted(p for p in files if p.endswith(".safetensors"))
    hub.faults.fail_next(2, status=503, path_glob=shard1)
    hub.faults.drop_after(60_000, path_glob=shard2)
    hub.faults.stall(5, after_bytes=50_000, path_glob=shard3)  # stall timeout below is 1 s

    proc = serve(
        TALKTUAH_DOWNLOAD_STALL_TIMEOUT="1",
        TALKTUAH_DOWNLOAD_RETRIES="3",
        TALKTUAH_DOWNLOAD_BACKOFF_SECONDS="0.1",
        TALKTUAH_DOWNLOAD_BACKOFF_MAX_SECONDS="0.5",
    )
    with api(proc) as client:
        accepted = request_download(client, model_id)
        assert accepted.status_code == 202, accepted.text
        final = wait_job(client, proc, accepted.json()["job_id"], timeout=15)
        assert final["status"] == "complete", f"{final}{log_tail(proc)}"
        assert final["error"] is None and final["attempts"] == 1, final
        assert hub.faults.pending() == 0, "every injected fault must have fired"
        assert_snapshot_matches(home, hub, model_id, sha, files)
        listed = local_model(client, model_id)
        assert listed is not None and listed["complete"] is True, listed

    log = hub.log_now()  # the stalled request is still sleeping on the hub side

    def calls(path: str, method: str) -> list[tuple[int, str | None, bool]]:
        return [
            (r.status, r.range, r.dropped) for r in log if r.path == path and r.method == method
        ]

    # 5xx burst: our probe HEAD got two 503s and was retried under our backoff; then the
    # resumable transfer (downloads/transfer.py) fetched it with no HEAD of the library's.
    assert [status for status, _, _ in calls(shard1, "HEAD")] == [503, 503, 200]
    # Dropped connection: the body was cut, and the client resumed it with a Range request.
    gets2 = calls(shard2, "GET")
    assert gets2[0] == (200, None, True), gets2
    assert len(gets2) == 2 and gets2[1][0] == 206 and gets2[1][1] is not None, gets2
    assert gets2[1][1].startswith("bytes=") and not gets2[1][1].startswith("bytes=0-"), gets2
    # Stall: the read timed out after 1 s and the client resumed with a Range request.
    gets3 = calls(shard3, "GET")
    assert any(status == 206 and rng for status, rng, _ in gets3), gets3
    assert "timed out" in proc.log(), log_tail(proc)


def test_hub_gone_mid_transfer_ends_the_job_in_error(hub: Hub, home: Path, serve: Serve) -> None:
    """The Hub disappears (connection refused) while a shard is on the wire: the job ends in
    `error` naming the cause, finished files are kept, the model is not listed complete."""
    model_id = "org/gone"
    files = make_files(n_files=2, size=200_000, seed=13)
    hub.add_repo(model_id, files)
    hub.faults.throttle_bps = 400_000
    proc = serve(TALKTUAH_DOWNLOAD_RETRIES="2", TALKTUAH_DOWNLOAD_BACKOFF_SECONDS="0.1")
    with api(proc) as client:
        accepted = request_download(client, model_id)
        assert accepted.status_code == 202, accepted.text
        job_id = accepted.json()["job_id"]
        wait_job(
            client, proc, job_id, timeout=10,
            until=lambda j: j["files_done"] >= 3 and j["bytes_done"] > 250_000,
            what="the second shard to be on the wire",
        )  # fmt: skip
        hub.stop()
        final = wait_job(client, proc, job_id, timeout=15)
        assert final["status"] == "error", final
        assert "Connection refused" in final["error"] and "model-00002" in final["error"], final
        assert final["completed_at"] is not None and final["progress"] < 100, final
        listed = local_model(client, model_id)
        assert listed is None or listed["complete"] is False, listed
        kept = snapshot_files(home, model_id, final["commit_hash"])
        assert "model-00001-of-00002.safetensors" in kept, kept
        # The shard cut off is kept as a resumable partial (downloads/transfer.py) for the
        # next request to continue from its byte; storage gc reclaims it after its grace.
        partials = incomplete_files(home)
        assert [p.suffix for p in partials] == [".talktuah-partial"], partials
        shard = hub.file_info(model_id, "model-00002-of-00002.safetensors").sha256
        assert partials[0].name == f"{shard}.talktuah-partial"


def test_hub_outage_gives_up_within_the_configured_retry_budget(
    hub: Hub, home: Path, serve: Serve
) -> None:
    """A Hub answering 503 to everything after planning, RETRIES=2 and BACKOFF=0.1 s: the job
    must end in `error` quickly and say the Hub answered 503.

    Regression: huggingface_hub retries a failing HEAD itself for ~23 s per attempt whatever
    our settings say, and its error hid the 503. TalkTuah now probes each file with a HEAD of
    its own (no library retries) so the retry budget and the cause are ours.
    """
    model_id = "org/outage"
    files = make_files(n_files=1, size=100_000, seed=14)
    hub.add_repo(model_id, files)
    proc = serve(
        TALKTUAH_DOWNLOAD_RETRIES="2",
        TALKTUAH_DOWNLOAD_BACKOFF_SECONDS="0.1",
        TALKTUAH_DOWNLOAD_BACKOFF_MAX_SECONDS="0.2",
        TALKTUAH_DOWNLOAD_STALL_TIMEOUT="1",
    )
    # Every file request fails from the start; the planning API calls still answer. (Taking
    # the whole Hub down after the 202 raced the worker's first HEAD: when that probe got
    # through, the library's own HEAD met the outage and retried for ~15 s by itself.)
    hub.faults.fail_next(1_000_000, 503, "*/resolve/*")
    try:
        with api(proc) as client:
            accepted = request_download(client, model_id)
            assert accepted.status_code == 202, accepted.text
            job_id = accepted.json()["job_id"]
            final = wait_job(client, proc, job_id, timeout=10, what="the outage to end the job")
            assert final["status"] == "error", final
            assert "503" in final["error"], final
            listed = local_model(client, model_id)
            assert listed is None or listed["complete"] is False, listed
    finally:
        proc.stop()


# -- 3. the event loop stays responsive while transfers run ---------------------------------


def test_two_downloads_run_a_third_queues_and_the_api_stays_responsive(
    hub: Hub, home: Path, serve: Serve
) -> None:
    models = ["org/busy-a", "org/busy-b", "org/busy-c"]
    for seed, model_id in enumerate(models, start=20):
        hub.add_repo(model_id, make_files(n_files=2, size=300_000, seed=seed))
    hub.faults.throttle_bps = 150_000  # ~4 s per model: far longer than the polls below

    proc = serve()  # default: 2 download workers
    with api(proc) as client:
        ids = []
        for model_id in models:
            accepted = request_download(client, model_id)
            assert accepted.status_code == 202, accepted.text
            ids.append(accepted.json()["job_id"])
        a, b, c = ids

        def statuses() -> dict[str, str]:
            listed = client.get("/api/downloads").json()["downloads"]
            return {j["job_id"]: j["status"] for j in listed}

        wait_for(
            lambda: statuses() == {a: "downloading", b: "downloading", c: "queued"},
            timeout=5, what=f"a and b downloading together, c queued ({statuses()})", proc=proc,
        )  # fmt: skip

        latencies: list[float] = []
        seen: dict[str, list[int]] = {a: [], b: []}
        last_poll: Json = {}
        for i in range(20):
            job_id = (a, b)[i % 2]
            t0 = time.monotonic()
            response = client.get("/api/download-progress", params={"job_id": job_id})
            latencies.append(time.monotonic() - t0)
            assert response.status_code == 200, response.text
            assert response.json()["status"] == "downloading", response.json()
            seen[job_id].append(response.json()["bytes_done"])
            last_poll = response.json()
            time.sleep(0.05)
        assert last_poll["speed_bps"] > 0 and last_poll["eta_seconds"] is not None, last_poll
        assert max(latencies) < 1.0, f"event loop blocked? latencies={latencies}"
        assert job(client, c)["status"] == "queued"
        refused = client.delete("/api/delete-model", params={"model_id": models[0]})
        assert refused.status_code == 409 and a in refused.json()["detail"], refused.text
        listed = local_model(client, models[0])
        assert listed is None or listed["complete"] is False, listed
        for job_id in (a, b):  # both really moved while we polled, side by side
            assert seen[job_id] == sorted(seen[job_id]) and seen[job_id][-1] > seen[job_id][0]

        # Clean up fast: cancel the queued one first so no worker picks it up.
        for job_id in (c, a, b):
            assert client.delete(f"/api/downloads/{job_id}").status_code == 200
        for job_id in (c, a, b):
            ended = wait_job(client, proc, job_id, timeout=10, what="cancellation")
            assert ended["status"] == "cancelled", ended
        assert incomplete_files(home) == [], "a cancelled transfer left its temp file"


# -- 4. SSE progress through the real server ------------------------------------------------


def read_sse(response: httpx.Response) -> Iterator[tuple[str, str]]:
    """(event, data) pairs from a text/event-stream response; comments (pings) skipped."""
    event, data = "message", list[str]()
    for line in response.iter_lines():
        if line == "":
            if data:
                yield event, "\n".join(data)
            event, data = "message", []
        elif line.startswith(":"):
            continue
        elif line.startswith("event:"):
            event = line[len("event:") :].strip()
        elif line.startswith("data:"):
            data.append(line[len("data:") :].lstrip())
    if data:
        yield event, "\n".join(data)


def test_sse_streams_progress_and_closes_when_the_job_ends(hub: Hub, serve: Serve) -> None:
    model_id = "org/streamed"
    files = make_files(n_files=2, size=400_000, seed=30)
    hub.add_repo(model_id, files)
    hub.faults.throttle_bps = 400_000  # ~2 s: several 0.25 s event polls

    proc = serve()
    with api(proc) as client:
        accepted = request_download(client, model_id)
        assert accepted.status_code == 202, accepted.text
        job_id = accepted.json()["job_id"]
        events: list[tuple[str, Json]] = []
        t0 = time.monotonic()
        with client.stream(
            "GET", f"/api/downloads/{job_id}/events", timeout=httpx.Timeout(10, read=5)
        ) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            for event, data in read_sse(response):
                events.append((event, json.loads(data)))
                assert time.monotonic() - t0 < 20, "the stream did not end with the job"
        # Leaving the loop means the server closed the stream by itself.

    names = {name for name, _ in events}
    assert names == {"progress"}, names
    payloads = [data for _, data in events]
    assert all(p["job_id"] == job_id for p in payloads)
    downloading = [p for p in payloads if p["status"] == "downloading"]
    assert len(downloading) >= 3, [(p["status"], p["bytes_done"]) for p in payloads]
    done = [p["bytes_done"] for p in payloads]
    assert done == sorted(done), f"bytes_done went backwards: {done}"
    percents = [p["progress"] for p in payloads]
    assert percents == sorted(percents), percents
    assert len({p["bytes_done"] for p in downloading}) >= 3, done
    last = payloads[-1]
    assert last["status"] == "complete" and last["progress"] == 100, last
    assert last["bytes_done"] == last["bytes_total"] == sum(map(len, files.values()))
    assert all(p["status"] in LIVE for p in payloads[:-1])

    with api(proc) as client:
        # A finished job's stream: its final state once, then the server closes it.
        with client.stream("GET", f"/api/downloads/{job_id}/events", timeout=5) as response:
            again = [json.loads(data) for _, data in read_sse(response)]
        assert [(p["status"], p["bytes_done"]) for p in again] == [("complete", last["bytes_done"])]
        missing = client.get("/api/downloads/nosuchjob/events")
        assert missing.status_code == 404, missing.text


# -- 5. callbacks -----------------------------------------------------------------------------


def test_callback_is_posted_exactly_once_when_the_job_completes(
    hub: Hub, serve: Serve, webhook: _ReceiverServer
) -> None:
    model_id = "org/called-back"
    hub.add_repo(model_id, make_files(n_files=1, size=50_000, seed=40))
    proc = serve(TALKTUAH_CALLBACK_ALLOW="127.0.0.1")  # the webhook listens on loopback
    callback = f"http://127.0.0.1:{webhook.server_address[1]}/webhook/talktuah"
    with api(proc) as client:
        accepted = request_download(client, model_id, callback_url=callback)
        assert accepted.status_code == 202, accepted.text
        job_id = accepted.json()["job_id"]
        assert accepted.json()["callback_url"] == callback
        final = wait_job(client, proc, job_id)
        assert final["status"] == "complete", final

    wait_for(lambda: webhook.received, timeout=5, what="the callback POST", proc=proc)
    time.sleep(1.0)  # a duplicate would come right after the first
    with webhook.lock:
        received = list(webhook.received)
    assert len(received) == 1, received
    path, payload = received[0]
    assert path == "/webhook/talktuah"
    assert payload["job_id"] == job_id and payload["status"] == "complete", payload
    assert payload["model_id"] == model_id and payload["progress"] == 100, payload


def test_a_dead_callback_url_never_fails_the_job(hub: Hub, serve: Serve) -> None:
    model_id = "org/nobody-listens"
    hub.add_repo(model_id, make_files(n_files=1, size=50_000, seed=41))
    proc = serve(TALKTUAH_DOWNLOAD_CALLBACK_RETRIES="0", TALKTUAH_CALLBACK_ALLOW="127.0.0.1")
    dead = f"http://127.0.0.1:{free_port()}/webhook"  # nothing listens there
    with api(proc) as client:
        accepted = request_download(client, model_id, callback_url=dead)
        assert accepted.status_code == 202, accepted.text
        job_id = accepted.json()["job_id"]
        final = wait_job(client, proc, job_id)
        assert final["status"] == "complete" and final["error"] is None, final
        listed = local_model(client, model_id)
        assert listed is not None and listed["complete"] is True, listed
    wait_for(
        lambda: any(
            "callback" in line and job_id in line and "failed" in line
            for line in proc.log().splitlines()
        ),
        timeout=5, what="the failed callback to be logged", proc=proc,
    )  # fmt: skip
    with api(proc) as client:
        assert job(client, job_id)["status"] == "complete"


# -- 6. a burst of identical requests makes one job ------------------------------------------


def test_twenty_concurrent_requests_make_exactly_one_job(hub: Hub, serve: Serve) -> None:
    model_id = "org/popular"
    hub.add_repo(model_id, make_files(n_files=2, size=200_000, seed=50))
    hub.faults.throttle_bps = 100_000  # the job outlives the burst: nobody sees "complete"

    proc = serve()
    barrier = threading.Barrier(20)

    def ask(client: httpx.Client) -> tuple[int, Json]:
        barrier.wait(5)
        response = request_download(client, model_id)
        return response.status_code, response.json()

    with api(proc, timeout=20) as client, ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(ask, [client] * 20))
        codes = sorted(code for code, _ in answers)
        assert codes == [200] * 19 + [202], answers
        job_ids = {body["job_id"] for _, body in answers}
        assert len(job_ids) == 1, answers
        assert all(body["status"] in LIVE for _, body in answers), answers
        listed = client.get("/api/downloads").json()["downloads"]
        assert [j["job_id"] for j in listed if j["model_id"] == model_id] == list(job_ids)
        (job_id,) = job_ids
        assert client.delete(f"/api/downloads/{job_id}").status_code == 200
        assert wait_job(client, proc, job_id, what="cancellation")["status"] == "cancelled"
