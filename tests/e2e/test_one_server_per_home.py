"""One `talktuah serve` per home; a taken port is refused before anything is touched; the
banner says where the key is and what to do next. Real `talktuah serve` processes, with the
stand-in engine."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..support.constants import API_KEY
from ..support.engine import FAKE_ENGINE, MODEL_FILES
from ..support.server import TalkTuahProcess, free_port
from ..support.tiny_model import install_in_cache

ENGINE_ENV = {
    "DEFAULT_MODEL": "org/a",
    "TALKTUAH_ENGINE_EXECUTABLE": str(FAKE_ENGINE),
    "TALKTUAH_ENGINE_HEALTH_INTERVAL": "0.2",
}


@pytest.fixture
def first(home: Path) -> Iterator[TalkTuahProcess]:
    """A server on `home` with the stand-in engine serving org/a."""
    install_in_cache(home / "models" / "hub", "org/a", MODEL_FILES)
    server = TalkTuahProcess(home, api_key=API_KEY, env=ENGINE_ENV)
    server.start()
    try:
        server.wait_engine("org/a")
        yield server
    finally:
        server.stop()


def run_serve(
    home: Path, port: int, *, api_key: str | None = API_KEY
) -> subprocess.CompletedProcess[str]:
    """A second `talktuah serve`, run to its end (a refusal ends at once)."""
    env = TalkTuahProcess(home, api_key=api_key, env=ENGINE_ENV, port=port).env()
    return subprocess.run(
        [sys.executable, "-m", "talktuah", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env, capture_output=True, text=True, timeout=30, cwd=home.parent,
    )  # fmt: skip


def engine_pid(home: Path) -> int:
    return int(json.loads((home / "engine" / "engine.pid").read_text())["pid"])


def chat(server: TalkTuahProcess) -> str:
    body = {"model": "org/a", "messages": [{"role": "user", "content": "hi"}]}
    with server.client() as client:
        answer = client.post("/v1/chat/completions", json=body)
    assert answer.status_code == 200, answer.text
    return str(answer.json()["choices"][0]["message"]["content"])


def snapshot(home: Path) -> dict[str, tuple[int, int]]:
    """Size and mtime of every file in the home, the engine's log and pidfile included."""
    return {
        str(path.relative_to(home)): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in sorted(home.rglob("*"))
        if path.is_file() and not path.name.startswith("state.db-")  # WAL files: the first's
    }


def assert_one_line_refusal(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode == 1, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.mark.parametrize("same_port", [True, False], ids=["same-port", "other-port"])
def test_a_second_serve_on_the_same_home_leaves_the_first_alone(
    first: TalkTuahProcess, home: Path, same_port: bool
) -> None:
    pid_before = engine_pid(home)
    chat(first)
    before = snapshot(home)

    result = run_serve(home, first.port if same_port else free_port())

    assert_one_line_refusal(
        result,
        f"TalkTuah already runs with this home (pid {first.proc.pid}, {first.url})",  # type: ignore[union-attr]
        "TALKTUAH_HOME",
    )
    assert snapshot(home) == before, "the refused start must not write to the home"
    assert engine_pid(home) == pid_before
    assert Path(f"/proc/{pid_before}").exists()
    chat(first)
    status = first.wait_engine("org/a", timeout=5)
    assert status["status"] == "ready"


def test_a_taken_port_is_refused_before_the_home_is_touched(tmp_path: Path) -> None:
    home = tmp_path / "fresh-home"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_serve(home, port, api_key=None)
    assert_one_line_refusal(result, f"Port {port}", "--port", "TALKTUAH_PORT")
    assert not home.exists(), "no state.db, key, lock or engine for a start that cannot listen"


def test_a_taken_port_leaves_an_existing_home_as_it_was(first: TalkTuahProcess, home: Path) -> None:
    """Another home's server on our port: refused on the port, and our home is untouched."""
    other_home = home.parent / "other-home"
    install_in_cache(other_home / "models" / "hub", "org/a", MODEL_FILES)
    before = snapshot(home)
    result = run_serve(other_home, first.port)
    assert_one_line_refusal(result, f"Port {first.port}", "--port")
    assert not (other_home / "state.db").exists() and not (other_home / "engine").exists()
    assert snapshot(home) == before
    chat(first)


def test_the_banner_says_where_the_key_is_and_what_to_do_next(home: Path) -> None:
    server = TalkTuahProcess(home, api_key=None)
    server.start()
    try:
        banner = server.log()
    finally:
        server.stop()
    key = (home / "api_key").read_text().strip()
    assert banner.count(key) == 1
    assert f"stored it in {home / 'api_key'}" in banner
    assert "`talktuah key` shows it again" in banner
    assert f"Dashboard: {server.url}/ui/" in banner
    assert "talktuah pull ORG/NAME" in banner
    assert "Traceback" not in banner
