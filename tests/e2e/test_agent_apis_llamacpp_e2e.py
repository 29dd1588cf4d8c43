"""Anthropic's and OpenAI's agent SDKs against the real `talktuah serve` on llama.cpp.

Why (issue 21): coding agents talk to local models through `/v1/messages` (the `anthropic`
SDK, Claude Code, n8n) and `/v1/responses` (the `openai` SDK, Codex CLI). With a key that
has only the `infer` scope, each SDK gets text back from a tiny GGUF model on llama.cpp's
server (TALKTUAH_ENGINE=auto), streamed and not; a key without `infer` gets 403 in each
API's error shape; `x-api-key` works; the token metrics count what each API reports. Last,
on a safetensors model (transformers serve, which has no /v1/messages) the SDK gets the
documented 501 without retrying, and /v1/responses still works there.

One server for the module; the tests run in order and the last switches the model.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
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
HELLO = [{"role": "user", "content": "hello there"}]
ENV = {
    "DEFAULT_MODEL": CHAT,
    "TALKTUAH_ENGINE_HEALTH_INTERVAL": "0.3",
    "TALKTUAH_ENGINE_STOP_TIMEOUT": "5",
    "TALKTUAH_ENGINE_THREADS": "1",
    "TALKTUAH_PROXY_LOAD_WAIT": "60",
}


def switch_and_wait(proc: TalkTuahProcess, model_id: str) -> dict[str, Any]:
    with proc.client() as client:
        answer = client.post("/api/switch-model", params={"model_id": model_id})
    assert answer.status_code in (200, 202), answer.text
    return proc.wait_status(
        lambda s: s["engine_state"] == "ready" and s["serving_model"] == model_id, 90
    )


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("agents") / "home"
    models = home / "models" / "hub"
    install_in_cache(models, CHAT, {"chat-Q4_K_M.gguf": tiny_gguf_bytes(seed=31)})
    install_in_cache(models, "org/st", tiny_chat_model_files(seed=33))
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


def new_key(server: TalkTuahProcess, *scopes: str) -> str:
    with server.client() as client:
        created = client.post("/api/keys", json={"name": "+".join(scopes), "scopes": scopes})
    assert created.status_code == 201, created.text
    key: str = created.json()["key"]
    return key


@pytest.fixture(scope="module")
def infer_key(server: TalkTuahProcess) -> str:
    return new_key(server, "infer")


@pytest.fixture(scope="module")
def reader_key(server: TalkTuahProcess) -> str:
    return new_key(server, "models:read")


def metric(server: TalkTuahProcess, line_start: str) -> float:
    text = httpx.get(f"{server.url}/metrics").text
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(line_start)
    )


def tokens(server: TalkTuahProcess) -> tuple[float, float]:
    return (
        metric(server, 'talktuah_tokens_total{kind="prompt"}'),
        metric(server, 'talktuah_tokens_total{kind="completion"}'),
    )


def wait_tokens(server: TalkTuahProcess, expected: tuple[float, float]) -> None:
    """Counted when the stream's last event passes, which may be just after the client
    has read it."""
    eventually(lambda: tokens(server), lambda counted: counted == expected, timeout=5,
               what=f"the tokens counted {expected}")  # fmt: skip


def claude(server: TalkTuahProcess, key: str, retries: int = 0) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.url, api_key=key, max_retries=retries)


def gpt(server: TalkTuahProcess, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0)


def test_anthropic_messages_create(server: TalkTuahProcess, infer_key: str) -> None:
    before = tokens(server)
    message = claude(server, infer_key).messages.create(model=CHAT, max_tokens=8, messages=HELLO)
    assert message.model == CHAT and message.role == "assistant"
    assert "".join(b.text for b in message.content if b.type == "text")
    usage = message.usage
    assert usage.output_tokens == 8
    prompt = usage.input_tokens + (usage.cache_read_input_tokens or 0)
    assert prompt > 0
    assert tokens(server) == (before[0] + prompt, before[1] + 8)


def test_anthropic_messages_stream(server: TalkTuahProcess, infer_key: str) -> None:
    before = tokens(server)
    with claude(server, infer_key).messages.stream(
        model=CHAT, max_tokens=6, messages=HELLO
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text and final.model == CHAT
    usage = final.usage  # input in message_start, output in message_delta
    assert usage.output_tokens == 6
    prompt = usage.input_tokens + (usage.cache_read_input_tokens or 0)
    wait_tokens(server, (before[0] + prompt, before[1] + 6))


def test_anthropic_count_tokens(server: TalkTuahProcess, infer_key: str) -> None:
    counted = claude(server, infer_key).messages.count_tokens(model=CHAT, messages=HELLO)
    assert counted.input_tokens > 0


def test_responses_create_whole_and_streamed(server: TalkTuahProcess, infer_key: str) -> None:
    client = gpt(server, infer_key)
    before = tokens(server)
    whole = client.responses.create(model=CHAT, input="hello there", max_output_tokens=8)
    assert whole.output_text and whole.model == CHAT
    assert whole.usage is not None and whole.usage.output_tokens == 8
    after_whole = (before[0] + whole.usage.input_tokens, before[1] + 8)
    assert tokens(server) == after_whole

    events = list(
        client.responses.create(model=CHAT, input="hello there", max_output_tokens=5, stream=True)
    )
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text
    final = events[-1]
    assert final.type == "response.completed" and final.response.model == CHAT
    usage = final.response.usage
    assert usage is not None and usage.output_tokens == 5
    wait_tokens(server, (after_whole[0] + usage.input_tokens, after_whole[1] + 5))


def test_a_key_without_infer_gets_403_in_each_apis_shape(
    server: TalkTuahProcess, reader_key: str
) -> None:
    with pytest.raises(anthropic.PermissionDeniedError) as refused:
        claude(server, reader_key).messages.create(model=CHAT, max_tokens=4, messages=HELLO)
    body = refused.value.response.json()
    assert body["type"] == "error" and body["error"]["type"] == "permission_error"
    assert "lacks the 'infer' scope" in body["error"]["message"]

    with pytest.raises(openai.PermissionDeniedError) as denied:
        gpt(server, reader_key).responses.create(model=CHAT, input="hi", max_output_tokens=4)
    error = denied.value.response.json()["error"]
    assert error["code"] == 403 and "lacks the 'infer' scope" in error["message"]


def test_x_api_key_is_a_key(server: TalkTuahProcess, infer_key: str) -> None:
    """Anthropic's clients (Claude Code, n8n's node, curl from Anthropic's docs) send it."""
    answer = httpx.post(
        f"{server.url}/v1/messages",
        headers={"x-api-key": infer_key, "anthropic-version": "2023-06-01"},
        json={"model": CHAT, "max_tokens": 3, "messages": HELLO},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["type"] == "message" and answer.headers["x-request-id"]


def test_an_engine_without_messages_is_the_documented_501(
    server: TalkTuahProcess, infer_key: str
) -> None:
    """transformers serve has /v1/responses but no /v1/messages."""
    assert switch_and_wait(server, "org/st")["engine"] == "transformers"
    refused_before = metric(server, 'talktuah_proxy_requests_total{endpoint="/v1/messages"')
    with pytest.raises(anthropic.APIStatusError) as refused:
        claude(server, infer_key, retries=2).messages.create(
            model="org/st", max_tokens=4, messages=HELLO
        )
    assert refused.value.status_code == 501
    body = refused.value.response.json()
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert "The transformers engine serving org/st does not implement" in body["error"]["message"]
    assert "llamacpp, vllm, docker, external do" in body["error"]["message"]
    # x-should-retry: false: the SDK asked once, although it may retry twice.
    after = metric(server, 'talktuah_proxy_requests_total{endpoint="/v1/messages"')
    assert after == refused_before + 1

    answer = gpt(server, infer_key).responses.create(
        model="org/st", input="hello there", max_output_tokens=4
    )
    assert answer.model == "org/st"  # transformers serve says org/st@main
    assert answer.usage is not None and answer.usage.output_tokens == 4
