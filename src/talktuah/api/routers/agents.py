"""The APIs coding agents speak: Anthropic's Messages API and OpenAI's Responses API.

Forwarded as they are to an engine that implements them (agent_apis/), with everything
`/v1/chat/completions` gets. Like the chat routes, these handlers take only `request`:
api/direct.py calls them without FastAPI's dependency solving.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from ...agent_apis import COUNT_TOKENS, MESSAGES, RESPONSES, AgentApi
from ...agent_apis.forward import forward
from ...proxy import parse_body
from ...services import Services
from ..auth import principal_of

router = APIRouter(tags=["agents"])


async def _forward(request: Request, api: AgentApi) -> Response:
    services: Services = request.app.state.services
    principal = principal_of(request)
    return await forward(
        services.proxy,
        api,
        parse_body(await request.body()),
        open_stream=lambda: services.limits.open_stream(principal),
    )


@router.post("/v1/messages")
async def messages(request: Request) -> Response:
    """Anthropic's Messages API (`x-api-key` or a Bearer key); streams named SSE events when
    `stream` is true. Engines: llamacpp, vllm, docker, external."""
    return await _forward(request, MESSAGES)


@router.post("/v1/messages/count_tokens")
async def count_tokens(request: Request) -> Response:
    """Anthropic's token counting for a Messages body: `{"input_tokens": N}`."""
    return await _forward(request, COUNT_TOKENS)


@router.post("/v1/responses")
async def responses(request: Request) -> Response:
    """OpenAI's Responses API, stateless (`store: false`; no `previous_response_id`);
    streams typed events when `stream` is true. Engines: llamacpp, vllm, docker, external,
    transformers."""
    return await _forward(request, RESPONSES)
