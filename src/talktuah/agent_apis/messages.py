"""Anthropic's Messages API: `/v1/messages` and `/v1/messages/count_tokens`.

Its answers, as llama.cpp's server and vLLM send them (and Anthropic documents them):

- A whole answer is a `message` object with `model` and `usage` at its top level.
- A stream is named SSE events, `event: <type>` then `data: {"type": "<type>", ...}`:
  `message_start` (the `message` object: `model`, and `usage` with the input tokens),
  `content_block_start` / `_delta` / `_stop`, `message_delta` (`usage.output_tokens`, a
  running total; newer servers repeat the input counts there), `message_stop`; `ping` and
  `error` events may come between.
- Input tokens are split: `input_tokens` is what was not read from a prompt cache,
  `cache_read_input_tokens` / `cache_creation_input_tokens` the rest (llama.cpp puts its
  cached prefix there). TalkTuah's prompt-token metric counts all three, as
  `prompt_tokens` does in chat completions.
- Errors are `{"type": "error", "error": {"type": "<error type>", "message": "..."}}`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from .base import AgentApi, Usage, int_or_none

#: Anthropic's error types by HTTP status (docs.anthropic.com, "Errors").
ERROR_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    422: "invalid_request_error",
    429: "rate_limit_error",
    501: "invalid_request_error",  # this server cannot do it: a request to change, not retry
    503: "overloaded_error",
}

_YEAR_3000 = 32_503_680_000

_INPUT_FIELDS = ("input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")


def anthropic_usage(usage: object) -> Usage:
    """(all input tokens, output tokens) from an Anthropic `usage` object."""
    if not isinstance(usage, Mapping):
        return None, None
    inputs = [n for n in (int_or_none(usage.get(f)) for f in _INPUT_FIELDS) if n is not None]
    return (sum(inputs) if inputs else None), int_or_none(usage.get("output_tokens"))


class Messages(AgentApi):
    capability = "messages"
    title = "Anthropic's Messages API"
    path = "/v1/messages"
    required = ("messages", (list,))

    def usage(self, body: Mapping[str, Any]) -> Usage:
        return anthropic_usage(body.get("usage"))

    def event_usage(self, event: Mapping[str, Any]) -> Usage:
        kind = event.get("type")
        if kind == "message_start":
            message = event.get("message")
            return anthropic_usage(message.get("usage") if isinstance(message, Mapping) else None)
        if kind == "message_delta":
            return anthropic_usage(event.get("usage"))
        return None, None

    def model_holder(self, event: dict[str, Any]) -> dict[str, Any] | None:
        message = event.get("message")
        return message if isinstance(message, dict) else event

    def error_object(self, status: int, message: str, kind: str) -> dict[str, Any]:
        kind = ERROR_TYPES.get(status, "api_error")
        return {"type": "error", "error": {"type": kind, "message": message}}


class CountTokens(Messages):
    """`{"input_tokens": N}` for a Messages body, generating nothing (no tokens counted)."""

    capability = "count_tokens"
    title = "Anthropic's token counting (count_tokens)"
    path = "/v1/messages/count_tokens"
    streams = False
    counts_tokens = False


def as_anthropic_models(listed: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI model list with Anthropic's fields added to each entry (`type`,
    `display_name`, `created_at`) and to the list (`first_id`, `last_id`, `has_more`)."""
    data = [entry for entry in listed.get("data", []) if isinstance(entry, dict)]
    for entry in data:
        created = entry.get("created")
        sane = isinstance(created, int) and 0 <= created < _YEAR_3000  # the engine's number
        stamp = datetime.fromtimestamp(created if sane and isinstance(created, int) else 0, UTC)
        entry.update(type="model", display_name=entry.get("id"), created_at=stamp.isoformat())
    ids = [entry.get("id") for entry in data]
    return listed | {"data": data, "has_more": False, "first_id": ids[0] if ids else None,
                     "last_id": ids[-1] if ids else None}  # fmt: skip


MESSAGES = Messages()
COUNT_TOKENS = CountTokens()
