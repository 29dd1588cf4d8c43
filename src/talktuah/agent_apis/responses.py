"""OpenAI's Responses API: `/v1/responses`, stateless.

Its answers, as llama.cpp's server, vLLM and `transformers serve` send them:

- A whole answer is a `response` object with `model` and `usage` (`input_tokens`, cached
  ones included, and `output_tokens`) at its top level.
- A stream is typed events, `data: {"type": "response.<...>", ...}` (llama.cpp and vLLM
  add an `event:` line each, transformers serve does not): `response.created` and
  `response.in_progress` (a `response` object), output items, text deltas, and last
  `response.completed` (or `.incomplete` / `.failed`) whose `response` carries the usage.
- Errors are OpenAI's `{"error": {"message", "type", "code"}}`, as on the rest of `/v1`.

Stateless: TalkTuah stores no response (engines may restart or change under it, and a
stored response would be readable by any key), so it forwards `store: false` and refuses
`previous_response_id` and `conversation`: the client sends the whole conversation in
`input`, as Codex CLI does with `store: false`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import BadRequestError
from .base import AgentApi, Usage, int_or_none

#: Only a finished response reports usage.
_FINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})


def responses_usage(usage: object) -> Usage:
    if not isinstance(usage, Mapping):
        return None, None
    return int_or_none(usage.get("input_tokens")), int_or_none(usage.get("output_tokens"))


class Responses(AgentApi):
    capability = "responses"
    title = "OpenAI's Responses API"
    path = "/v1/responses"
    required = ("input", (str, list))

    def check(self, body: dict[str, Any]) -> None:
        super().check(body)
        for field in ("previous_response_id", "conversation"):
            if body.get(field) is not None:
                raise BadRequestError(
                    f"'{field}' needs stored responses; TalkTuah's /v1/responses is stateless "
                    "(store: false). Send the whole conversation in 'input' instead."
                )

    def prepare(self, payload: dict[str, Any]) -> None:
        payload["store"] = False

    def usage(self, body: Mapping[str, Any]) -> Usage:
        return responses_usage(body.get("usage"))

    def event_usage(self, event: Mapping[str, Any]) -> Usage:
        response = event.get("response")
        if event.get("type") not in _FINAL or not isinstance(response, Mapping):
            return None, None
        return responses_usage(response.get("usage"))

    def model_holder(self, event: dict[str, Any]) -> dict[str, Any] | None:
        response = event.get("response")
        return response if isinstance(response, dict) else event

    def error_object(self, status: int, message: str, kind: str) -> dict[str, Any]:
        return {"error": {"message": message, "type": kind, "code": status}}


RESPONSES = Responses()
