"""`talktuah key create | ls | revoke` against the real server."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ..support.constants import API_KEY
from ..support.server import TalkTuahProcess


@pytest.fixture
def server(home: Path) -> Iterator[TalkTuahProcess]:
    proc = TalkTuahProcess(home, api_key=API_KEY)
    proc.start()
    yield proc
    proc.stop()


def cli(url: str, *args: str, key: str = API_KEY) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TALKTUAH_", "HF_"))}
    env.update({"TALKTUAH_URL": url, "PROXY_API_KEY": key, "COLUMNS": "200"})
    return subprocess.run(
        [sys.executable, "-m", "talktuah", *args],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_key_lifecycle(server: TalkTuahProcess) -> None:
    created = cli(server.url, "key", "create", "n8n", "--scope", "infer", "-s", "models:read")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert key.startswith("tt_") and "not shown again" in created.stderr
    status = httpx.get(f"{server.url}/api/model-status", headers={"Authorization": f"Bearer {key}"})
    assert status.status_code == 200
    listed = cli(server.url, "key", "ls")
    assert listed.returncode == 0 and "n8n" in listed.stdout and key not in listed.stdout
    key_id = next(line.split()[1] for line in listed.stdout.splitlines() if "n8n" in line)
    revoked = cli(server.url, "key", "revoke", key_id)
    assert revoked.returncode == 0 and "Revoked" in revoked.stderr
    assert (
        httpx.get(
            f"{server.url}/api/model-status", headers={"Authorization": f"Bearer {key}"}
        ).status_code
        == 401
    )


def test_key_commands_need_an_admin_key(server: TalkTuahProcess) -> None:
    created = cli(server.url, "key", "create", "reader", "--scope", "models:read")
    reader = created.stdout.strip()
    denied = cli(server.url, "key", "ls", key=reader)
    assert denied.returncode == 1 and "lacks the 'admin' scope" in denied.stderr
    bad = cli(server.url, "key", "create", "x", "--scope", "root")
    assert bad.returncode == 1 and "choose from" in bad.stderr
