"""`talktuah pull` against the real server: the command the manual instructions name."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from talktuah.sizes import format_bytes

from ..support.constants import API_KEY
from ..support.hub import Hub, make_files
from ..support.server import TalkTuahProcess, free_port


@pytest.fixture
def server(home: Path, hub: Hub) -> Iterator[TalkTuahProcess]:
    # Random-byte weights cannot be loaded: an external engine makes --activate a state change.
    env = {
        "HF_ENDPOINT": hub.url,
        "TALKTUAH_ENGINE": "external",
        "TALKTUAH_ENGINE_URL": "http://127.0.0.1:9",
    }
    proc = TalkTuahProcess(home, api_key=API_KEY, env=env)
    proc.start()
    yield proc
    proc.stop()


def pull(url: str, *args: str, key: str | None = API_KEY) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TALKTUAH_", "HF_"))}
    env.pop("PROXY_API_KEY", None)
    env.update({"TALKTUAH_URL": url, "COLUMNS": "120"})
    if key is not None:
        env["PROXY_API_KEY"] = key
    return subprocess.run(
        [sys.executable, "-m", "talktuah", "pull", *args],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_pull_downloads_and_reports(server: TalkTuahProcess, hub: Hub) -> None:
    files = make_files(n_files=2, size=50_000, seed=41)
    hub.add_repo("org/pulled", files)
    done = pull(server.url, "org/pulled", "--activate")
    assert done.returncode == 0, done.stderr
    total = sum(len(b) for b in files.values())
    assert f"org/pulled downloaded ({format_bytes(total)}, {len(files)} files)." in done.stderr
    with server.client() as client:
        status = client.get("/api/model-status").json()
    assert status["downloaded_models"] == ["org/pulled"]
    assert status["current_model"] == "org/pulled"
    again = pull(server.url, "org/pulled")
    assert again.returncode == 0 and "already downloaded" in again.stderr


def test_pull_errors_are_messages_not_tracebacks(server: TalkTuahProcess, hub: Hub) -> None:
    missing = pull(server.url, "org/nowhere")
    assert missing.returncode == 1
    assert "org/nowhere was not found on the Hub" in missing.stderr
    assert "Traceback" not in missing.stderr
    denied = pull(server.url, "org/nowhere", key="wrong-key-0123456789abc")
    assert denied.returncode == 1 and "refused the API key" in denied.stderr
    assert "`talktuah key`" in denied.stderr and "Traceback" not in denied.stderr


def test_pull_without_a_server_says_how_to_start_one() -> None:
    result = pull(f"http://127.0.0.1:{free_port()}", "org/any")
    assert result.returncode == 1
    assert "Cannot reach TalkTuah" in result.stderr and "talktuah serve" in result.stderr
