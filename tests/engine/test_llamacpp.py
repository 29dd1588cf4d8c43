"""llama.cpp's server from the xllamacpp wheel, started by our launcher as the driver does.

Why: the llamacpp driver passes llama-server's flags to engine/llamacpp_server.py; these
tests run that real process on tiny GGUF models built by tests/support/tiny_gguf.py and hold
the facts the driver relies on (alias in /v1/models, the usage-only chunk, `-n`, embeddings
per model, tokens equal to the Hugging Face tokenizer's, a prompt exit on SIGTERM).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from talktuah.config import Settings
from talktuah.engine.auto import AutoDriver
from talktuah.engine.llamacpp import (
    DEFAULT_MAX_TOKENS,
    LAUNCHER,
    LlamaCppDriver,
    find_gguf,
    llamacpp_args,
)
from talktuah.errors import EngineError

from ..support.eventually import eventually
from ..support.gguf_shapes import gguf_with_shape
from ..support.server import free_port
from ..support.tiny_gguf import tiny_gguf_bytes
from ..support.tiny_model import install_in_cache, tiny_chat_model_files

pytestmark = pytest.mark.timeout(120)

#: The tests that run llama-server itself on a model built with torch (~8 s to import under
#: load): `slow`, out of the inner loop; the argument tests read a header-only GGUF.
real_engine = pytest.mark.slow


@pytest.fixture(scope="module")
def gguf_chat() -> bytes:
    return tiny_gguf_bytes(seed=11)


@pytest.fixture(scope="module")
def gguf_embed() -> bytes:
    return tiny_gguf_bytes(seed=12, embedding=True)


@pytest.fixture(scope="module")
def gguf_header_only() -> bytes:
    """A GGUF whose header is the tiny model's (context 256), without its weights."""
    return gguf_with_shape(layers=2, embedding=64, heads=4, kv_heads=4, context=256)


@pytest.fixture
def engine_settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", engine="llamacpp", engine_threads=1, engine_ctx=128)


def _serve(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", LAUNCHER, *argv], stdout=out, stderr=out)
    return proc


def _ready(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 30) -> None:
    def health() -> int:
        assert proc.poll() is None, log.read_text()
        return httpx.get(f"{url}/health", timeout=1).status_code

    eventually(
        health, lambda status: status == 200, timeout=timeout,
        ignoring=(httpx.TransportError,), what=lambda: f"llama.cpp ready\n{log.read_text()}",
    )  # fmt: skip


@pytest.fixture
def chat_engine(
    engine_settings: Settings, gguf_chat: bytes, tmp_path: Path
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    models = engine_settings.models_dir
    install_in_cache(models, "org/tiny-GGUF", {"tiny-Q4_K_M.gguf": gguf_chat})
    port = free_port()
    model = find_gguf(models, "org/tiny-GGUF")
    argv = llamacpp_args(engine_settings, "org/tiny-GGUF", model, port)
    assert argv[argv.index("-n") + 1] == str(DEFAULT_MAX_TOKENS)
    argv += ["-n", "9"]  # as TALKTUAH_ENGINE_EXTRA_ARGS would: the last one wins
    log = tmp_path / "llama.log"
    proc = _serve(argv, log)
    url = f"http://127.0.0.1:{port}"
    try:
        _ready(url, proc, log)
        yield url, proc
    finally:
        proc.kill()
        proc.wait(10)


@real_engine
def test_the_served_model_is_named_by_its_id_and_answers(
    chat_engine: tuple[str, subprocess.Popen[bytes]],
) -> None:
    url, _ = chat_engine
    listed = httpx.get(f"{url}/v1/models").json()["data"]
    assert [m["id"] for m in listed] == ["org/tiny-GGUF"]
    answer = httpx.post(
        f"{url}/v1/chat/completions",
        json={"messages": [{"role": "user", "content": "hello there"}]},
        timeout=30,
    ).json()
    # No max_tokens: `-n` bounds it (without, llama.cpp generates to the end of the context).
    assert answer["usage"]["completion_tokens"] == 9
    assert answer["choices"][0]["finish_reason"] == "length"
    assert answer["choices"][0]["message"]["content"]


@real_engine
def test_usage_comes_in_a_stream_only_when_asked(
    chat_engine: tuple[str, subprocess.Popen[bytes]],
) -> None:
    url, _ = chat_engine
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4, "stream": True}

    def events(extra: dict[str, object]) -> list[dict[str, object]]:
        with httpx.stream("POST", f"{url}/v1/chat/completions", json=body | extra) as r:
            lines = [ln[6:] for ln in r.iter_lines() if ln.startswith("data: ")]
        assert lines[-1] == "[DONE]"
        return [json.loads(ln) for ln in lines[:-1]]

    assert not any("usage" in e for e in events({}))
    asked = events({"stream_options": {"include_usage": True}})
    assert asked[-1]["choices"] == [] and asked[-1]["usage"]["completion_tokens"] == 4  # type: ignore[index]


@real_engine
def test_tokens_equal_the_hugging_face_tokenizers(
    chat_engine: tuple[str, subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    """The q/k permutation and the gpt2 tokenizer declaration make the GGUF the same model."""
    from transformers import PreTrainedTokenizerFast

    url, _ = chat_engine
    files = tiny_chat_model_files(seed=11)
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    tokenizer = PreTrainedTokenizerFast.from_pretrained(str(tmp_path))
    text = "the quick brown fox jumps over the lazy dog, hello there!"
    ours = httpx.post(f"{url}/tokenize", json={"content": text, "add_special": False}).json()
    assert ours["tokens"] == tokenizer.encode(text, add_special_tokens=False)


@real_engine
def test_sigterm_ends_it_at_once(chat_engine: tuple[str, subprocess.Popen[bytes]]) -> None:
    _, proc = chat_engine
    started = time.monotonic()
    proc.terminate()
    assert proc.wait(5) == 0
    assert time.monotonic() - started < 2


@real_engine
def test_an_embedding_model_gets_embeddings(
    engine_settings: Settings, gguf_embed: bytes, tmp_path: Path
) -> None:
    models = engine_settings.models_dir
    install_in_cache(models, "org/embed-GGUF", {"embed-F32.gguf": gguf_embed})
    model = find_gguf(models, "org/embed-GGUF")
    assert model.pooling == "mean"
    port = free_port()
    argv = llamacpp_args(engine_settings, "org/embed-GGUF", model, port)
    assert argv[argv.index("--pooling") - 1] == "--embeddings"
    log = tmp_path / "embed.log"
    proc = _serve(argv, log)
    try:
        _ready(f"http://127.0.0.1:{port}", proc, log)
        data = httpx.post(
            f"http://127.0.0.1:{port}/v1/embeddings", json={"input": ["hello", "fox"]}, timeout=30
        ).json()["data"]
        assert len(data) == 2 and len(data[0]["embedding"]) == 64
    finally:
        proc.kill()
        proc.wait(10)


def test_the_tag_picks_the_file_and_the_context_is_capped(
    engine_settings: Settings, gguf_header_only: bytes
) -> None:
    models = engine_settings.models_dir
    gguf = gguf_header_only
    install_in_cache(
        models, "org/q-GGUF", {"q-Q4_K_M.gguf": gguf, "q-Q8_0.gguf": gguf, "x.txt": b""}
    )
    assert find_gguf(models, "org/q-GGUF").path.name == "q-Q4_K_M.gguf"
    model = find_gguf(models, "org/q-GGUF:q8_0")
    assert model.path.name == "q-Q8_0.gguf"
    assert model.context_length == 256  # the tiny model's own
    big = Settings(home=engine_settings.home, engine_ctx=4096, engine_threads=1)
    args = llamacpp_args(big, "org/q-GGUF:Q8_0", model, 1234)
    assert args[args.index("-c") + 1] == "256"
    assert args[args.index("--alias") + 1] == "org/q-GGUF:Q8_0"
    assert args[args.index("-t") + 1] == args[args.index("-tb") + 1] == "1"
    with pytest.raises(EngineError, match="talktuah pull org/none-GGUF"):
        find_gguf(models, "org/none-GGUF")


def test_a_users_own_llama_server_gets_the_same_arguments(
    engine_settings: Settings, gguf_header_only: bytes
) -> None:
    install_in_cache(engine_settings.models_dir, "org/tiny-GGUF", {"t-Q8_0.gguf": gguf_header_only})
    own = LlamaCppDriver(engine_settings, executable="/opt/llama/llama-server")
    own._model = find_gguf(engine_settings.models_dir, "org/tiny-GGUF")
    bundled = LlamaCppDriver(engine_settings)
    bundled._model = own._model
    bundled.port = own.port
    mine = own.command("org/tiny-GGUF", "/opt/llama/llama-server")
    theirs = bundled.command("org/tiny-GGUF", sys.executable)
    assert mine[0] == "/opt/llama/llama-server"
    assert theirs[:3] == [sys.executable, "-m", LAUNCHER]
    assert mine[1:] == theirs[3:]


def test_auto_picks_the_engine_by_the_models_files(engine_settings: Settings) -> None:
    models = engine_settings.models_dir
    install_in_cache(models, "org/g-GGUF", {"g-Q4_K_M.gguf": b"GGUF", "README.md": b"#"})
    install_in_cache(models, "org/st", {"model.safetensors": b"x", "config.json": b"{}"})
    auto = AutoDriver(engine_settings)
    assert auto.engine_for("org/g-GGUF") == "llamacpp"
    assert auto.engine_for("org/any:Q8_0") == "llamacpp"
    assert auto.engine_for("org/st") == "transformers"
    assert auto.engine_for("org/not-downloaded") == "transformers"
