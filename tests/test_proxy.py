"""EngineProxy paths that are hard to reach through a whole server."""

from __future__ import annotations

import asyncio
import json

import pytest

from talktuah.engine.base import EngineState
from talktuah.errors import EngineLoadingError, EngineUnavailableError
from talktuah.services import Services

from .support.server import free_port


@pytest.mark.parametrize(
    ("state", "error"),
    [(EngineState.LOADING, EngineLoadingError), (EngineState.READY, EngineUnavailableError)],
)
def test_an_unreachable_engine_is_503_during_a_switch_else_502(
    services: Services, state: EngineState, error: type[Exception]
) -> None:
    """Regression (found by bench/soak.py): a request that passed the readiness check just
    before a switch stopped the engine got 502; it is a switch in progress, so 503."""
    driver = services.engine.driver
    driver.port = free_port()  # type: ignore[attr-defined]  # nothing listens there
    services.engine._state = state
    with pytest.raises(error):
        asyncio.run(services.proxy._send("POST", "/v1/chat/completions", {"model": "x"}))


def test_sse_lines_are_rewritten_without_losing_anything() -> None:
    """The fast path swaps the model id in place; anything unusual goes through JSON."""
    from talktuah.proxy import _rewrite_line

    counted: list[object] = []
    field = b'"model":"org/asked"'

    def rewrite(line: bytes) -> bytes:
        return _rewrite_line(line, field, "org/asked", counted.append)

    plain = rewrite(
        b'data: {"model":"org/a@main","choices":[{"delta":{"content":"say \\"model\\""}}]}'
    )
    assert json.loads(plain[5:]) == {
        "model": "org/asked",
        "choices": [{"delta": {"content": 'say "model"'}}],
    }
    assert plain.endswith(b"\n\n")
    with_usage = rewrite(b'data: {"model":"x","usage":{"completion_tokens":3}}\r')
    assert json.loads(with_usage[5:])["model"] == "org/asked" and counted == [
        {"completion_tokens": 3}
    ]
    nested = rewrite(b'data: {"model":"x","tool":{"model":"keep"}}')
    assert json.loads(nested[5:]) == {"model": "org/asked", "tool": {"model": "keep"}}
    assert rewrite(b"data: [DONE]") == b"data: [DONE]\n\n"
    assert rewrite(b": keep-alive") == b"" and rewrite(b"") == b""
    assert rewrite(b"event: message") == b"event: message\n"
    assert rewrite(b"data: not json") == b"data: not json\n\n"
