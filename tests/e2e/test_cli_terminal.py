"""The CLI as a person meets it, under a pseudo-terminal (issue 16): a server that goes away
mid-`pull` or mid-`chat`, a wrong key or no server at all give one line that names the next
step, never a Python traceback; `pull` re-attaches by itself; Ctrl-C stops an answer and
keeps the chat."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from talktuah.sizes import format_bytes

from ..support.constants import API_KEY
from ..support.engine import FAKE_ENGINE, MODEL_FILES
from ..support.eventually import eventually
from ..support.hub import Hub, make_files
from ..support.server import TalkTuahProcess, free_port
from ..support.tiny_model import install_in_cache
from .terminal import Terminal

pytestmark = pytest.mark.timeout(150)


def cli_env(url: str, key: str = API_KEY) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TALKTUAH_", "HF_"))}
    return env | {"TALKTUAH_URL": url, "PROXY_API_KEY": key}


@pytest.fixture
def downloads_server(home: Path, hub: Hub) -> Iterator[TalkTuahProcess]:
    env = {
        "HF_ENDPOINT": hub.url,
        "TALKTUAH_ENGINE": "external",
        "TALKTUAH_ENGINE_URL": "http://127.0.0.1:9",
        "TALKTUAH_DOWNLOAD_CHUNK_BYTES": "16384",
    }
    proc = TalkTuahProcess(home, api_key=API_KEY, env=env)
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture
def chat_server(home: Path) -> Iterator[TalkTuahProcess]:
    install_in_cache(home / "models" / "hub", "org/a", MODEL_FILES)
    env = {
        "DEFAULT_MODEL": "org/a",
        "TALKTUAH_ENGINE": "transformers",  # the driver the stand-in engine speaks for
        "TALKTUAH_ENGINE_EXECUTABLE": str(FAKE_ENGINE),
    }
    proc = TalkTuahProcess(home, api_key=API_KEY, env=env)
    proc.start()
    proc.wait_engine("org/a")
    yield proc
    proc.stop()


def test_pull_reattaches_after_the_server_is_killed_and_restarted(
    downloads_server: TalkTuahProcess, hub: Hub
) -> None:
    files = make_files(n_files=2, size=300_000, seed=71)
    hub.add_repo("org/big", files)
    hub.faults.throttle_bps = 150_000
    term = Terminal(
        "pull", "org/big", "--reattach-timeout", "60", env=cli_env(downloads_server.url)
    )
    try:
        with downloads_server.client() as client:
            progress = eventually(
                lambda: client.get("/api/download-progress").json(),
                lambda latest: latest["bytes_done"] >= 60_000, timeout=30, interval=0.1,
                what="60 kB of the pull downloaded",
            )  # fmt: skip
        job_id = progress["job_id"]
        downloads_server.kill9()
        term.expect(f"(job {job_id}) continues on the server")
        time.sleep(1.5)  # the CLI backs off; the server is down for a while
        downloads_server.start()
        term.expect(f"Re-attached to job {job_id}")
        assert term.wait(90) == 0, term.text()
    finally:
        term.close()
    screen = term.text()
    assert "Traceback" not in screen, screen
    total = sum(len(b) for b in files.values())
    assert f"org/big downloaded ({format_bytes(total)}, {len(files)} files)." in screen, screen


def test_pull_gives_up_after_its_bound_and_says_how_to_reattach(
    downloads_server: TalkTuahProcess, hub: Hub
) -> None:
    hub.add_repo("org/slow", make_files(n_files=1, size=400_000, seed=72))
    hub.faults.throttle_bps = 100_000
    term = Terminal(
        "pull", "org/slow", "--reattach-timeout", "2", env=cli_env(downloads_server.url)
    )
    try:
        term.expect("org/slow")
        with downloads_server.client() as client:
            eventually(
                lambda: client.get("/api/download-progress").json(),
                lambda latest: latest["bytes_done"] >= 20_000, timeout=30, interval=0.1,
                what="20 kB of the pull downloaded",
            )  # fmt: skip
        downloads_server.kill9()
        assert term.wait(30) == 1
    finally:
        term.close()
    screen = term.text()
    assert "`talktuah pull org/slow` re-attaches" in screen and "Traceback" not in screen, screen


def test_chat_ctrl_c_stops_the_answer_and_keeps_the_repl(chat_server: TalkTuahProcess) -> None:
    term = Terminal("chat", "--max-tokens", "400", env=cli_env(chat_server.url))
    try:
        at = term.expect("you> ")
        term.press("hello\r")
        at = term.expect("assistant> t0 t1 t2", after=at)
        term.press("\x03")  # Ctrl-C: 400 tokens take 20 s; this stops them
        at = term.expect("(answer stopped)", after=at, timeout=5)
        at = term.expect("you> ", after=at)
        term.press("/help\r")
        at = term.expect("/clear", after=at)
        term.press("/clear\r")
        at = term.expect("Conversation cleared.", after=at)
        term.press("/exit\r")
        assert term.wait(15) == 0
    finally:
        term.close()
    screen = term.text()
    assert "Traceback" not in screen and "KeyboardInterrupt" not in screen, screen
    assert screen.count("assistant>") == 1, "commands must not be sent as prompts"


def test_chat_with_the_server_stopped_mid_answer_is_one_line(
    chat_server: TalkTuahProcess,
) -> None:
    term = Terminal("chat", "--max-tokens", "400", env=cli_env(chat_server.url))
    try:
        at = term.expect("you> ")
        term.press("hello\r")
        term.expect("assistant> t0 t1", after=at)
        chat_server.kill9()
        assert term.wait(20) == 1
    finally:
        term.close()
    screen = term.text()
    assert "Traceback" not in screen, screen
    assert "Lost the connection to TalkTuah" in screen and "`talktuah serve`" in screen, screen


@pytest.mark.parametrize("case", ["wrong key", "no server"])
def test_wrong_key_and_no_server_are_one_line(chat_server: TalkTuahProcess, case: str) -> None:
    if case == "wrong key":
        env = cli_env(chat_server.url, key="tt_wrong-key-0123456789")
        expected = "`talktuah key`"
    else:
        env = cli_env(f"http://127.0.0.1:{free_port()}")
        expected = "Start it with `talktuah serve`"
    for args in (("chat",), ("pull", "org/x"), ("ls",)):
        term = Terminal(*args, env=env)
        assert term.wait(30) == 1
        lines = [line for line in term.text().splitlines() if line.strip()]
        assert len(lines) <= 2 and expected in " ".join(lines), lines  # 80 columns may wrap
        assert "Traceback" not in term.text()


def test_rm_says_before_asking_that_the_model_is_active(chat_server: TalkTuahProcess) -> None:
    term = Terminal("rm", "org/a", env=cli_env(chat_server.url))
    assert term.wait(30) == 1
    screen = term.text()
    assert "org/a is the active model: `talktuah rm org/a --force`" in screen, screen
    assert "[y/N]" not in screen  # refused before any question
    forced = Terminal("rm", "org/a", "--force", env=cli_env(chat_server.url))
    try:
        forced.expect("the active model: the engine stops serving it? [y/N]")
        forced.press("n\r")
        assert forced.wait(15) == 1
    finally:
        forced.close()
    assert "Nothing deleted" in forced.text()


def test_key_revoke_accepts_a_unique_name(chat_server: TalkTuahProcess) -> None:
    env = cli_env(chat_server.url)
    with chat_server.client() as client:
        for name in ("n8n", "dup", "dup"):
            body = {"name": name, "scopes": ["infer"]}
            assert client.post("/api/keys", json=body).status_code in (200, 201)
    ambiguous = Terminal("key", "revoke", "dup", env=env)
    assert ambiguous.wait(30) == 1
    assert "2 keys are named dup; revoke one by id" in ambiguous.text(), ambiguous.text()
    revoked = Terminal("key", "revoke", "n8n", env=env)
    assert revoked.wait(30) == 0 and "Revoked" in revoked.text(), revoked.text()
    listed = Terminal("key", "ls", env=env)
    assert listed.wait(30) == 0
    with chat_server.client() as client:
        ids = [k["id"] for k in client.get("/api/keys").json()["keys"]]
    assert all(key_id in listed.text() for key_id in ids), listed.text()  # 80 columns
