"""The OpenAI-compatible surface (`/v1/*`) and the seed's `/api/chat`, `/api/models`."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request, Response

from ...proxy import BadRequestError
from ..auth import PrincipalDep
from ..deps import ServicesDep

router = APIRouter(tags=["openai"])


async def _json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = json.loads(raw or b"null")
    except ValueError as exc:
        raise BadRequestError(f"The request body is not valid JSON: {exc}.") from exc
    if not isinstance(body, dict):
        raise BadRequestError("The request body must be a JSON object.")
    return body


@router.post("/v1/chat/completions")
async def chat_completions(
    request: Request, services: ServicesDep, principal: PrincipalDep
) -> Response:
    return await services.proxy.forward(
        "/v1/chat/completions",
        await _json_body(request),
        open_stream=lambda: services.limits.open_stream(principal),
    )


@router.post("/v1/completions")
async def completions(request: Request, services: ServicesDep, principal: PrincipalDep) -> Response:
    return await services.proxy.forward(
        "/v1/completions",
        await _json_body(request),
        open_stream=lambda: services.limits.open_stream(principal),
    )


@router.post("/v1/embeddings")
async def embeddings(request: Request, services: ServicesDep) -> Response:
    return await services.proxy.forward("/v1/embeddings", await _json_body(request))


@router.get("/v1/models")
async def v1_models(services: ServicesDep) -> dict[str, Any]:
    return await services.proxy.models()


@router.post("/api/chat")
async def chat(request: Request, services: ServicesDep, principal: PrincipalDep) -> Response:
    """The seed's chat endpoint: an OpenAI chat body that streams unless `stream` is false."""
    return await services.proxy.forward(
        "/v1/chat/completions",
        await _json_body(request),
        default_stream=True,
        open_stream=lambda: services.limits.open_stream(principal),
    )


@router.get("/api/models")
async def models(services: ServicesDep) -> dict[str, Any]:
    return await services.proxy.models()
