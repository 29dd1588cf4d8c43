"""The CLI against the real server, the test hub and the stand-in engine."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ..support.constants import API_KEY
from ..support.engine import FAKE_ENGINE, MODEL_FILES
from ..support.eventually import eventually
from ..support.hub import Hub, make_files
from ..support.server import TalkTuahProcess
from ..support.tiny_model import install_in_cache
from .terminal import interruptible

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def server(home: Path, hub: Hub) -> Iterator[TalkTuahProcess]:
    install_in_cache(home / "models" / "hub", "org/a", MODEL_FILES)
    env = {
        "HF_ENDPOINT": hub.url,
        "DEFAULT_MODEL": "org/a",
        "TALKTUAH_ENGINE_EXECUTABLE": str(FAKE_ENGINE),
        "TALKTUAH_DOWNLOAD_CHUNK_BYTES": "16384",
    }
    proc = TalkTuahProcess(home, api_key=API_KEY, env=env)
    proc.start()
    yield proc
    proc.stop()


def cli_env(url: str, key: str | None = API_KEY) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TALKTUAH_", "HF_"))}
    env.pop("PROXY_API_KEY", None)
    env.update({"TALKTUAH_URL": url, "COLUMNS": "200"})
    if key is not None:
        env["PROXY_API_KEY"] = key
    return env


def cli(
    url: str, *args: str, stdin: str = "", key: str | None = API_KEY, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "talktuah", *args], input=stdin,
        env=cli_env(url, key) | env, capture_output=True, text=True, timeout=90,
    )  # fmt: skip


def test_pull_shows_progress_and_ends_in_ls(server: TalkTuahProcess, hub: Hub) -> None:
    hub.add_repo("org/pulled", make_files(n_files=2, size=120_000, seed=51))
    hub.faults.throttle_bps = 600_000
    pulled = cli(server.url, "pull", "org/pulled")
    assert pulled.returncode == 0, pulled.stderr
    assert "5/5 files" in pulled.stderr and "org/pulled downloaded" in pulled.stderr
    listed = cli(server.url, "ls")
    row = next(line for line in listed.stdout.splitlines() if "org/pulled" in line)
    assert "234.5 KiB" in row and "(main)" in row and "yes" in row


def test_detach_downloads_and_cancel(server: TalkTuahProcess, hub: Hub) -> None:
    hub.add_repo("org/slow", make_files(n_files=2, size=300_000, seed=52))
    hub.faults.throttle_bps = 100_000
    queued = cli(server.url, "pull", "org/slow", "--detach")
    job_id = queued.stdout.strip()
    assert queued.returncode == 0 and len(job_id) == 12
    listed = cli(server.url, "downloads")
    assert job_id in listed.stdout and "org/slow" in listed.stdout
    ps = cli(server.url, "ps")
    assert f"download  {job_id}  org/slow" in ps.stdout
    cancelled = cli(server.url, "downloads", "--cancel", job_id)
    assert cancelled.returncode == 0 and job_id in cancelled.stderr
    with server.client() as client:
        eventually(
            lambda: client.get(f"/api/downloads/{job_id}").json()["status"],
            lambda status: status == "cancelled", timeout=10, interval=0.1,
        )  # fmt: skip


def test_ctrl_c_asks_whether_to_cancel(server: TalkTuahProcess, hub: Hub) -> None:
    hub.add_repo("org/interrupted", make_files(n_files=2, size=300_000, seed=53))
    hub.faults.throttle_bps = 100_000
    proc = subprocess.Popen(
        [sys.executable, "-m", "talktuah", "pull", "org/interrupted"],
        env=cli_env(server.url), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
        preexec_fn=interruptible,  # noqa: PLW1509 - signal dispositions only, before exec
    )  # fmt: skip
    try:
        with server.client() as client:
            job_id = eventually(
                lambda: client.get("/api/download-progress").json(),
                lambda latest: latest.get("bytes_done", 0) >= 50_000,
                interval=0.1,
                what="50 kB of the pull downloaded",
            )["job_id"]
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate("y\n", timeout=30)
    finally:
        proc.kill()
    assert "Cancel the download of org/interrupted on the server?" in out
    assert f"Cancelled job {job_id}" in err and proc.returncode == 130
    with server.client() as client:  # the worker stops within a chunk or two
        eventually(
            lambda: client.get(f"/api/downloads/{job_id}").json()["status"],
            lambda status: status == "cancelled", timeout=10, interval=0.1,
        )  # fmt: skip


def test_use_ps_chat_and_rm(server: TalkTuahProcess, home: Path) -> None:
    install_in_cache(home / "models" / "hub", "org/b", MODEL_FILES | {"b": b"b"})
    server.wait_engine("org/a")
    used = cli(server.url, "use", "org/b")
    assert used.returncode == 0 and "org/b is serving." in used.stderr, used.stderr
    ps = cli(server.url, "ps")
    assert "engine  transformers: ready" in ps.stdout and "active  org/b" in ps.stdout
    chat = cli(server.url, "chat", stdin="hello\nand again\n/exit\n")
    assert chat.returncode == 0, chat.stderr
    assert chat.stdout.count("assistant> t0 t1 t2") == 2, chat.stdout
    missing = cli(server.url, "use", "org/none")
    assert missing.returncode == 1 and "org/none is not downloaded" in missing.stderr
    assert "`talktuah pull org/none`" in missing.stderr
    kept = cli(server.url, "rm", "org/a", stdin="n\n")
    assert kept.returncode == 1 and "Nothing deleted" in kept.stderr
    refused = cli(server.url, "rm", "org/b", "-y")
    assert refused.returncode == 1 and "`talktuah rm org/b --force`" in refused.stderr
    removed = cli(server.url, "rm", "org/a", "-y")
    assert removed.returncode == 0 and "Deleted org/a" in removed.stderr
    assert "org/a" not in cli(server.url, "ls").stdout


def test_wrong_key_and_no_server(server: TalkTuahProcess) -> None:
    wrong = cli(server.url, "ls", key="tt_wrong-key-0123456789")
    assert wrong.returncode == 1 and "refused the API key" in wrong.stderr
    down = cli("http://127.0.0.1:9", "ps")
    assert down.returncode == 1 and "Start it with `talktuah serve`" in down.stderr


def test_key_show_and_rotate(home: Path) -> None:
    proc = TalkTuahProcess(home, api_key=None)
    proc.start()
    try:
        shown = cli(proc.url, "key", key=None, TALKTUAH_HOME=str(home))
        old = shown.stdout.strip()
        assert shown.returncode == 0 and old == (home / "api_key").read_text().strip()
        rotated = cli(proc.url, "key", "--rotate", key=None, TALKTUAH_HOME=str(home))
        new = rotated.stdout.strip()
        assert rotated.returncode == 0 and new != old and "replaced" in rotated.stderr
        assert (home / "api_key").read_text().strip() == new
        status = f"{proc.url}/api/model-status"
        assert httpx.get(status, headers={"Authorization": f"Bearer {old}"}).status_code == 401
        assert httpx.get(status, headers={"Authorization": f"Bearer {new}"}).status_code == 200
    finally:
        proc.stop()
    env_key = TalkTuahProcess(home, api_key=API_KEY)
    env_key.start()
    try:
        refused = cli(env_key.url, "key", "--rotate")
        assert (
            refused.returncode == 1 and "The admin key comes from PROXY_API_KEY" in refused.stderr
        )
    finally:
        env_key.stop()
