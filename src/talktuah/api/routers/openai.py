"""The OpenAI-compatible surface (`/v1/*`) and the seed's `/api/chat`, `/api/models`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from ...agent_apis.messages import as_anthropic_models
from ...proxy import parse_body
from ...services import Services
from ..auth import principal_of
from ..deps import ServicesDep

router = APIRouter(tags=["openai"])


async def _json_body(request: Request) -> dict[str, Any]:
    return parse_body(await request.body())


async def _forward(request: Request, path: str, *, default_stream: bool = False) -> Response:
    """The streaming routes: services and caller straight from the request.

    These handlers take only `request`: api/direct.py calls them without FastAPI's
    dependency solving (see principal_of).
    """
    services: Services = request.app.state.services
    principal = principal_of(request)
    return await services.proxy.forward(
        path,
        await _json_body(request),
        default_stream=default_stream,
        open_stream=lambda: services.limits.open_stream(principal),
    )


@router.post("/v1/chat/completions")
async def chat_completions(request: Request) -> Response:
    return await _forward(request, "/v1/chat/completions")


@router.post("/v1/completions")
async def completions(request: Request) -> Response:
    return await _forward(request, "/v1/completions")


@router.post("/v1/embeddings")
async def embeddings(request: Request) -> Response:
    services: Services = request.app.state.services
    return await services.proxy.forward("/v1/embeddings", await _json_body(request))


@router.get("/v1/models")
async def v1_models(request: Request, services: ServicesDep) -> dict[str, Any]:
    """OpenAI's model list; with an `anthropic-version` header, also the fields Anthropic's
    clients read (n8n's Anthropic node fills its model picker from them)."""
    listed = await services.proxy.models()
    if "anthropic-version" in request.headers:
        return as_anthropic_models(listed)
    return listed


@router.post("/api/chat")
async def chat(request: Request) -> Response:
    """The seed's chat endpoint: an OpenAI chat body that streams unless `stream` is false."""
    return await _forward(request, "/v1/chat/completions", default_stream=True)


@router.get("/api/models")
async def models(services: ServicesDep) -> dict[str, Any]:
    return await services.proxy.models()
