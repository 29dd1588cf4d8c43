"""SIGTERM: in-flight requests finish, downloads pause and resume, the engine stops."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path

import httpx

from ..support.constants import API_KEY
from ..support.engine import FAKE_ENGINE, MODEL_FILES
from ..support.eventually import eventually
from ..support.hub import Hub, make_files
from ..support.server import TalkTuahProcess
from ..support.tiny_model import install_in_cache


def job_row(home: Path, job_id: str) -> tuple[str, int]:
    db = sqlite3.connect(home / "state.db")
    try:
        status, files_done = db.execute(
            "SELECT status, files_done FROM download_jobs WHERE id = ?", (job_id,)
        ).fetchone()
    finally:
        db.close()
    return str(status), int(files_done)


def test_sigterm_pauses_a_download_and_the_next_start_resumes_it(home: Path, hub: Hub) -> None:
    files = make_files(n_files=4, size=150_000, seed=71)
    hub.add_repo("org/paused", files)
    hub.faults.throttle_bps = 300_000
    env = {"HF_ENDPOINT": hub.url, "TALKTUAH_DOWNLOAD_CHUNK_BYTES": "16384"}
    first = TalkTuahProcess(home, api_key=API_KEY, env=env)
    first.start()
    try:
        with first.client() as client:
            job_id = client.post(
                "/api/download-model", params={"model_id": "org/paused", "auto": "true"}
            ).json()["job_id"]
            eventually(
                lambda: client.get(f"/api/downloads/{job_id}").json()["files_done"],
                lambda done: done >= 5, what=lambda: f"five files done\n{first.log()}",
            )  # fmt: skip
        first.proc.terminate()  # type: ignore[union-attr]
        assert first.wait_exit(20) in (0, -15)
    finally:
        first.stop()
    status, files_done = job_row(home, job_id)
    assert status == "queued" and files_done >= 5, "a stop pauses the job, it does not fail it"
    done_before = set(hub.fetched_files("org/paused")) - {
        "model-00003-of-00004.safetensors", "model-00004-of-00004.safetensors",
    }  # fmt: skip
    hub.clear_log()
    hub.faults.throttle_bps = None
    second = TalkTuahProcess(home, api_key=API_KEY, env=env, port=first.port)
    second.start()
    try:
        with second.client() as client:

            def status() -> str:
                job = client.get(f"/api/downloads/{job_id}").json()
                assert job["status"] != "error", job
                return str(job["status"])

            eventually(status, lambda now: now == "complete", what="the resumed job completing")
        assert not set(hub.fetched_files("org/paused")) & done_before
    finally:
        second.stop()


def test_sigterm_lets_an_in_flight_request_finish(home: Path) -> None:
    install_in_cache(home / "models" / "hub", "org/a", MODEL_FILES)
    env = {
        "DEFAULT_MODEL": "org/a",
        "TALKTUAH_ENGINE_EXECUTABLE": str(FAKE_ENGINE),
        "FAKE_ENGINE_REPLY_DELAY": "2",
        "TALKTUAH_LOG_FORMAT": "json",
    }
    server = TalkTuahProcess(home, api_key=API_KEY, env=env)
    server.start()
    try:
        server.wait_engine()
        engine_pid = json.loads((home / "engine" / "engine.pid").read_text())["pid"]
        answers: list[httpx.Response] = []
        body = {"model": "org/a", "messages": [{"role": "user", "content": "hi"}]}
        request = threading.Thread(
            target=lambda: answers.append(
                httpx.post(
                    f"{server.url}/v1/chat/completions",
                    json=body,
                    timeout=30,
                    headers={"Authorization": f"Bearer {API_KEY}", "X-Request-ID": "inflight"},
                )  # fmt: skip
            )
        )
        request.start()
        time.sleep(0.5)  # the request reaches the engine, which answers after 2 s
        server.proc.terminate()  # type: ignore[union-attr]
        request.join(30)
        assert answers and answers[0].status_code == 200, answers
        assert server.wait_exit(20) in (0, -15)
        assert (
            not Path(f"/proc/{engine_pid}").exists()
            or "Z" in Path(f"/proc/{engine_pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
        )
    finally:
        server.stop()
    records = [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]
    assert records, server.log()[-2000:]
    assert any(r.get("request_id") == "inflight" for r in records)
    assert API_KEY not in server.log()
