"""The APIs coding agents speak besides chat completions, passed through to the engine.

Anthropic's Messages API (`POST /v1/messages`, `POST /v1/messages/count_tokens`: Claude
Code, the `anthropic` SDK, n8n's Anthropic chat model node) and OpenAI's Responses API
(`POST /v1/responses`: Codex CLI, the `openai` SDK's `responses.create`). llama.cpp's server
and vLLM implement both natively, so TalkTuah translates nothing: it routes them exactly as
`/v1/chat/completions` (same keys and `infer` scope, rate limits, stream slots, request
ids, metrics, `model` routing through `EngineProxy.route`) and passes each API's own event
framing through byte for byte, the `model` value excepted (the id the client asked for).

What differs between the APIs lives in one module each (messages.py, responses.py: the
body fields an engine cannot do without, where usage and the model id sit in answers and
events, the error shape); forwarding is shared (forward.py). An engine that does not
implement an API (`EngineDriver.apis`) gets the request refused in that API's error shape,
naming the engines that do, with 501 and `x-should-retry: false` (the SDKs would otherwise
retry a 5xx that cannot change).
"""

from __future__ import annotations

from .base import AgentApi
from .messages import COUNT_TOKENS, MESSAGES
from .responses import RESPONSES

__all__ = ["AgentApi", "COUNT_TOKENS", "MESSAGES", "RESPONSES", "api_for_path"]


def api_for_path(path: str) -> AgentApi | None:
    """The agent API whose error shape a reply on `path` takes (None: OpenAI's or ours)."""
    if path.startswith("/v1/messages"):
        return MESSAGES
    if path.startswith("/v1/responses"):
        return RESPONSES
    return None
