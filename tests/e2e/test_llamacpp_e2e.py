"""llama.cpp's server behind the real `talktuah serve` (TALKTUAH_ENGINE=auto, the default).

One server for the module, GGUF models and one safetensors model in its models dir: the
tests run in order and each leaves the server serving `org/chat-GGUF` again. What they hold:
a GGUF model runs on llamacpp (ready in well under a second here), the `openai` SDK streams
through TalkTuah, raw streams end with `[DONE]`, token usage is counted although the client
did not ask for it (and the usage-only chunk does not reach that client), embeddings come
from a model made for them, a switch to a safetensors model changes the engine, and a
llama.cpp process killed with SIGKILL is restarted like any engine.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from ..support.constants import API_KEY
from ..support.eventually import eventually
from ..support.server import TalkTuahProcess
from ..support.tiny_gguf import tiny_gguf_bytes
from ..support.tiny_model import install_in_cache, tiny_chat_model_files

pytestmark = pytest.mark.timeout(180)

CHAT = "org/chat-GGUF"
ENV = {
    "DEFAULT_MODEL": CHAT,
    "TALKTUAH_ENGINE_HEALTH_INTERVAL": "0.3",
    "TALKTUAH_ENGINE_RESTART_BACKOFF": "0.3",
    "TALKTUAH_ENGINE_STOP_TIMEOUT": "5",
    "TALKTUAH_ENGINE_THREADS": "1",
    "TALKTUAH_PROXY_LOAD_WAIT": "60",
}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("llamacpp") / "home"
    models = home / "models" / "hub"
    chat = tiny_gguf_bytes(seed=21)
    install_in_cache(models, CHAT, {"chat-Q4_K_M.gguf": chat, "chat-Q8_0.gguf": chat})
    install_in_cache(
        models, "org/embed-GGUF", {"embed-F32.gguf": tiny_gguf_bytes(22, embedding=True)}
    )
    install_in_cache(models, "org/st", tiny_chat_model_files(seed=23))
    return home


@pytest.fixture(scope="module")
def server(home: Path) -> Iterator[TalkTuahProcess]:
    proc = TalkTuahProcess(home, api_key=API_KEY, env=ENV)
    proc.start()
    try:
        proc.wait_status(lambda s: s["engine_state"] == "ready", 60)
        yield proc
    finally:
        proc.stop()


def switch_and_wait(
    proc: TalkTuahProcess, model_id: str, serves: str | None = None
) -> dict[str, Any]:
    with proc.client() as client:
        answer = client.post("/api/switch-model", params={"model_id": model_id})
    assert answer.status_code in (200, 202), answer.text
    wanted = serves or model_id
    return proc.wait_status(
        lambda s: s["engine_state"] == "ready" and s["serving_model"] == wanted, 90
    )


def engine_pid(home: Path) -> int:
    return int(json.loads((home / "engine" / "engine.pid").read_text())["pid"])


def model_file(home: Path) -> str:
    """The `-m` the llama-server running now got (after `python -m <launcher>`): each
    loaded model has its own pidfile (engine.pid, engine-2.pid, ...); a switch stops the
    old one after the new one serves."""
    pidfiles = sorted((home / "engine").glob("engine*.pid"), key=lambda p: p.stat().st_mtime)
    argv: list[str] = json.loads(pidfiles[-1].read_text())["argv"]
    start = argv.index("talktuah.engine.llamacpp_server")
    return argv[argv.index("-m", start) + 1]


def tokens_counted(proc: TalkTuahProcess) -> float:
    text = httpx.get(f"{proc.url}/metrics").text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith('talktuah_tokens_total{kind="completion"}')
    )


def test_a_gguf_model_serves_on_llamacpp(server: TalkTuahProcess, home: Path) -> None:
    ready = server.status()
    assert ready["engine"] == "llamacpp" and ready["serving_model"] == CHAT
    assert model_file(home).endswith("chat-Q4_K_M.gguf")  # no tag: Q4_K_M
    environ = Path(f"/proc/{engine_pid(home)}/environ").read_bytes().split(b"\0")
    assert b"HF_HUB_OFFLINE=1" in environ
    assert not any(e.startswith(b"HF_TOKEN=") for e in environ)


def test_the_openai_sdk_streams_and_usage_is_counted(server: TalkTuahProcess) -> None:
    before = tokens_counted(server)
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=API_KEY, max_retries=0)
    stream = client.chat.completions.create(
        model=CHAT, messages=[{"role": "user", "content": "hello there"}], max_tokens=8, stream=True
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    assert all(c.model == CHAT for c in chunks)
    assert all(c.choices for c in chunks), "the usage-only chunk the client did not ask for"
    eventually(lambda: tokens_counted(server), lambda counted: counted >= before + 8, timeout=5)
    assert tokens_counted(server) == before + 8


def test_a_raw_stream_ends_with_done_and_keeps_usage_when_asked(server: TalkTuahProcess) -> None:
    body = {
        "model": CHAT, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3,
        "stream": True, "stream_options": {"include_usage": True},
    }  # fmt: skip
    headers = {"Authorization": f"Bearer {API_KEY}"}
    with httpx.stream(
        "POST", f"{server.url}/v1/chat/completions", json=body, headers=headers, timeout=30
    ) as response:
        lines = [ln for ln in response.iter_lines() if ln.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    last = json.loads(lines[-2][6:])
    assert last["choices"] == [] and last["usage"]["completion_tokens"] == 3


def test_embeddings_from_a_model_made_for_them(server: TalkTuahProcess) -> None:
    switch_and_wait(server, "org/embed-GGUF")
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=API_KEY, max_retries=0)
    result = client.embeddings.create(model="org/embed-GGUF", input=["hello", "the fox"])
    assert len(result.data) == 2 and len(result.data[0].embedding) == 64
    switch_and_wait(server, CHAT)


def test_a_tag_picks_another_quant(server: TalkTuahProcess, home: Path) -> None:
    ready = switch_and_wait(server, f"{CHAT}:q8_0", serves=f"{CHAT}:Q8_0")  # tags: any case
    assert ready["engine"] == "llamacpp"
    assert model_file(home).endswith("chat-Q8_0.gguf")
    switch_and_wait(server, CHAT)


def test_switching_to_safetensors_changes_the_engine(server: TalkTuahProcess) -> None:
    assert switch_and_wait(server, "org/st")["engine"] == "transformers"
    assert switch_and_wait(server, CHAT)["engine"] == "llamacpp"


def test_a_killed_llamacpp_is_restarted(server: TalkTuahProcess, home: Path) -> None:
    old = engine_pid(home)
    os.kill(old, signal.SIGKILL)
    ready = server.wait_status(lambda s: s["engine_state"] == "ready" and s["restarts"] >= 1, 60)
    assert ready["serving_model"] == CHAT and ready["engine"] == "llamacpp"
    assert engine_pid(home) != old
    answer = httpx.post(
        f"{server.url}/v1/chat/completions",
        json={"model": CHAT, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2},
        headers={"Authorization": f"Bearer {API_KEY}"},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
