"""`talktuah ps`, `talktuah load` and `talktuah unload` against the real `talktuah serve` on
llama.cpp (tiny GGUF models, ready in well under a second): one server for the module, the
tests run in order."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest

from ..support.constants import API_KEY
from ..support.eventually import eventually
from ..support.server import TalkTuahProcess
from ..support.tiny_gguf import tiny_gguf_bytes
from ..support.tiny_model import install_in_cache

pytestmark = pytest.mark.timeout(120)

A, B, BAD = "org/a-GGUF", "org/b-GGUF", "org/bad-GGUF"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TalkTuahProcess]:
    home = tmp_path_factory.mktemp("cli-pool") / "home"
    models = home / "models" / "hub"
    install_in_cache(models, A, {"a-Q4_K_M.gguf": tiny_gguf_bytes(41)})
    install_in_cache(models, B, {"b-Q4_K_M.gguf": tiny_gguf_bytes(42)})
    whole = tiny_gguf_bytes(43)
    install_in_cache(models, BAD, {"bad-Q4_K_M.gguf": whole[: len(whole) // 2]})
    env = {"DEFAULT_MODEL": A, "TALKTUAH_ENGINE_THREADS": "1", "TALKTUAH_ENGINE_RESTART_LIMIT": "0"}
    proc = TalkTuahProcess(home, api_key=API_KEY, env=env)
    proc.start()
    try:
        proc.wait_engine(A, timeout=60)
        yield proc
    finally:
        proc.stop()


def cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TALKTUAH_", "HF_"))}
    env |= {"TALKTUAH_URL": url, "PROXY_API_KEY": API_KEY, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "talktuah", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )


def loaded(proc: TalkTuahProcess) -> set[str]:
    body = httpx.get(f"{proc.url}/api/ps", headers={"Authorization": f"Bearer {API_KEY}"}).json()
    return {row["model"] for row in body["models"]}


def test_load_waits_until_loaded_and_ps_lists_both(server: TalkTuahProcess) -> None:
    done = cli(server.url, "load", B, "--keep-alive", "5m")
    assert done.returncode == 0, done.stderr
    assert f"{B} is loaded (llamacpp)" in done.stderr  # messages go to stderr, tables out
    shown = cli(server.url, "ps")
    assert shown.returncode == 0, shown.stderr
    assert "engine  llamacpp: ready" in shown.stdout, "the default model's engine, as before"
    table = [line for line in shown.stdout.splitlines() if line.startswith("│")]
    rows = {line.split()[1]: line for line in table if "-GGUF " in line}
    assert set(rows) == {A, B}
    assert "ready" in rows[A] and "never (default model)" in rows[A]
    assert "ready" in rows[B] and ("4m" in rows[B] or "5m 00s" in rows[B])
    assert "MiB" in rows[B], "its measured memory"


def test_unload_stops_it_and_says_so_when_it_is_not_loaded(server: TalkTuahProcess) -> None:
    done = cli(server.url, "unload", B)
    assert done.returncode == 0, done.stderr
    assert f"Unloading {B}" in done.stderr
    eventually(lambda: B not in loaded(server), timeout=15, interval=0.1, what=f"{B} unloaded")
    again = cli(server.url, "unload", B)
    assert again.returncode == 1
    assert (
        f"{B} is not loaded; `talktuah ps` lists the loaded models." in again.stderr + again.stdout
    )


def test_a_model_that_fails_to_load_says_why(server: TalkTuahProcess) -> None:
    done = cli(server.url, "load", BAD)
    assert done.returncode == 1
    said = done.stderr + done.stdout
    assert f"{BAD} did not load" in said and "`talktuah ps`" in said
    assert A in loaded(server), "the default model is untouched"


def test_load_of_a_model_not_downloaded_names_the_pull(server: TalkTuahProcess) -> None:
    done = cli(server.url, "load", "org/never")
    assert done.returncode == 1
    assert "talktuah pull org/never" in done.stderr + done.stdout
