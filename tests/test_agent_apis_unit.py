"""agent_apis/ without a server: the stream pass-through, usage tallies, engine errors.

Why: the pass-through must hold whatever chunks the engine's bytes arrive in (an event
split mid-line, mid-`"model"`, or many events in one read), count Anthropic's running
totals once, and turn an engine's error (OpenAI-shaped, even on llama.cpp's /v1/messages)
into an EngineError that api/errors.py answers in the API's own shape.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from talktuah.agent_apis import MESSAGES, RESPONSES, AgentApi
from talktuah.agent_apis.forward import TokenTally, _finish, pass_events
from talktuah.api.errors import error_reply
from talktuah.errors import EngineError
from talktuah.metrics import Metrics

from .support.fake_engine import agent_stream


def _tokens(metrics: Metrics) -> tuple[float, float]:
    def one(kind: str) -> float:
        return metrics.tokens.labels(kind)._value.get()

    return one("prompt"), one("completion")


def _run(api: AgentApi, chunks: list[bytes], requested: str) -> tuple[bytes, Metrics]:
    metrics = Metrics()

    async def body() -> AsyncIterator[bytes]:
        for chunk in chunks:
            yield chunk

    async def go() -> bytes:
        response = httpx.Response(200, content=body())
        out = [c async for c in pass_events(response, api, requested, TokenTally(metrics))]
        return b"".join(out)

    return asyncio.run(go()), metrics


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:], strict=False) if b > a]


@pytest.mark.parametrize(
    ("api", "path"), [(MESSAGES, "/v1/messages"), (RESPONSES, "/v1/responses")]
)
@given(cuts=st.lists(st.integers(0, 10_000), max_size=30))
@settings(max_examples=60, deadline=None)
def test_any_chunking_gives_the_same_bytes_and_counts(
    api: AgentApi, path: str, cuts: list[int]
) -> None:
    engine = b"".join(agent_stream(path, "org/a@main", 4))
    out, metrics = _run(api, _split(engine, cuts), "org/a")
    assert out == b"".join(agent_stream(path, "org/a", 4))
    assert _tokens(metrics) == (3, 4)


def test_the_model_value_is_swapped_in_place_and_nothing_else_moves() -> None:
    line = b'data: {"type":"message_start", "message": {"model" : "org/a@main","x":1}}\r\n\r\n'
    out, _ = _run(MESSAGES, [line], "org/a")
    assert out == line.replace(b'"org/a@main"', b'"org/a"')
    # A value already right is left byte for byte (the spaces around the colon too).
    same = b'data: {"type":"ping","model" : "org/a"}\n\n'
    assert _run(MESSAGES, [same], "org/a")[0] == same
    # "model" inside a string (a prompt, a tool's arguments) is never touched.
    text = b'data: {"type":"content_block_delta","delta":{"text":"say \\"model\\": \\"x\\""}}\n\n'
    assert _run(MESSAGES, [text], "org/a")[0] == text


def test_anthropic_running_totals_are_counted_once() -> None:
    events = [
        {"type": "message_start", "message": {"usage": {"input_tokens": 5, "output_tokens": 1}}},
        {"type": "message_delta", "usage": {"output_tokens": 3}},
        {"type": "message_delta", "usage": {"input_tokens": 5, "output_tokens": 7}},
        {"type": "message_delta", "usage": {"output_tokens": True}},  # not a count
    ]
    data = b"".join(f"data: {json.dumps(e)}\n\n".encode() for e in events)
    _, metrics = _run(MESSAGES, [data], "m")
    assert _tokens(metrics) == (5, 7)


@pytest.mark.parametrize(
    ("status", "text", "expected_status", "words"),
    [
        (500, '{"error":{"code":500,"message":"\'messages\' is required"}}', 502, "is required"),
        (400, '{"error":{"message":"bad max_tokens","type":"x"}}', 400, "bad max_tokens"),
        (404, '{"detail":"Not Found"}', 404, "does not offer this"),
        (200, "not json", 502, "not json"),
    ],
)
def test_engine_errors_come_back_in_the_apis_shape(
    status: int, text: str, expected_status: int, words: str
) -> None:
    upstream = httpx.Response(status, text=text)
    with pytest.raises(EngineError) as raised:
        _finish(Metrics(), MESSAGES, upstream, "m")
    assert raised.value.code == ("engine_rejected" if expected_status < 500 else "engine_failed")
    assert raised.value.data() == {"engine_status": status}
    answer = error_reply(MESSAGES.path, raised.value)
    body = json.loads(bytes(answer.body))
    assert answer.status_code == expected_status
    assert body["type"] == "error" and words in body["error"]["message"]
    assert body["code"] == raised.value.code and body["engine_status"] == status
    with pytest.raises(EngineError) as raised:
        _finish(Metrics(), RESPONSES, upstream, "m")
    openai_shaped = json.loads(bytes(error_reply(RESPONSES.path, raised.value).body))
    assert words in openai_shaped["error"]["message"]
    assert openai_shaped["error"]["code"] == expected_status
