"""The one place where TalkTuah's errors become HTTP responses."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..agent_apis import api_for_path
from ..errors import (
    ApiNotSupportedError,
    EngineError,
    EngineLoadingError,
    EngineTimeoutError,
    EngineUnavailableError,
    HubAccessError,
    HubDataError,
    HubUnavailableError,
    InsufficientStorageError,
    InvalidCallbackUrlError,
    InvalidKeyRequestError,
    InvalidModelIdError,
    InvalidParameterError,
    InvalidRevisionError,
    JobNotFoundError,
    KeyNotFoundError,
    KeyRotationError,
    ModelBusyError,
    ModelInUseError,
    ModelNotFoundError,
    ModelNotReadyError,
    RateLimitedError,
    StoragePermissionError,
    SwitchInProgressError,
    SwitchNotSupportedError,
    TalkTuahError,
)
from ..logs import request_id
from ..proxy import BadRequestError

logger = logging.getLogger(__name__)

STATUS_FOR: dict[type[TalkTuahError], int] = {
    InvalidModelIdError: status.HTTP_422_UNPROCESSABLE_CONTENT,
    InvalidParameterError: status.HTTP_422_UNPROCESSABLE_CONTENT,
    InvalidRevisionError: status.HTTP_422_UNPROCESSABLE_CONTENT,
    HubDataError: status.HTTP_502_BAD_GATEWAY,
    InvalidCallbackUrlError: status.HTTP_422_UNPROCESSABLE_CONTENT,
    ModelNotFoundError: status.HTTP_404_NOT_FOUND,
    ModelInUseError: status.HTTP_400_BAD_REQUEST,
    ModelBusyError: status.HTTP_409_CONFLICT,
    StoragePermissionError: status.HTTP_403_FORBIDDEN,
    JobNotFoundError: status.HTTP_404_NOT_FOUND,
    HubAccessError: status.HTTP_403_FORBIDDEN,
    HubUnavailableError: status.HTTP_502_BAD_GATEWAY,
    InsufficientStorageError: status.HTTP_507_INSUFFICIENT_STORAGE,
    ModelNotReadyError: status.HTTP_409_CONFLICT,
    SwitchInProgressError: status.HTTP_409_CONFLICT,
    SwitchNotSupportedError: status.HTTP_409_CONFLICT,
    EngineError: status.HTTP_500_INTERNAL_SERVER_ERROR,
    EngineUnavailableError: status.HTTP_502_BAD_GATEWAY,
    EngineLoadingError: status.HTTP_503_SERVICE_UNAVAILABLE,
    EngineTimeoutError: status.HTTP_504_GATEWAY_TIMEOUT,
    KeyNotFoundError: status.HTTP_404_NOT_FOUND,
    InvalidKeyRequestError: status.HTTP_422_UNPROCESSABLE_CONTENT,
    RateLimitedError: status.HTTP_429_TOO_MANY_REQUESTS,
    KeyRotationError: status.HTTP_409_CONFLICT,
    ApiNotSupportedError: status.HTTP_501_NOT_IMPLEMENTED,
}


class ErrorBody(BaseModel):
    """What every error reply looks like (on /v1 it also carries OpenAI's `error` object)."""

    detail: str
    request_id: str | None = None


_MEANING = {
    400: "The request body is not valid for the engine",
    401: "Missing, unknown, revoked or expired API key",
    403: "The key lacks the scope this route needs, or the models dir is read-only",
    404: "Unknown model, job, key, or a model that is not served",
    409: "Conflict with a running download or switch",
    413: "Request body too large",
    422: "Invalid parameters",
    429: "Over the key's rate limit or stream cap (see Retry-After)",
    501: "The serving engine does not implement this API (the message names those that do)",
    502: "The engine or the Hub failed",
    503: "The engine is still loading (see Retry-After)",
    504: "The engine did not answer in time",
    507: "Not enough disk space, or RAM for a GGUF model (force=true downloads it anyway)",
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI documentation of our error replies (replacing FastAPI's list-shaped 422)."""
    return {code: {"model": ErrorBody, "description": _MEANING[code]} for code in codes}


def status_for(exc: TalkTuahError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS_FOR:
            return STATUS_FOR[cls]
    return status.HTTP_500_INTERNAL_SERVER_ERROR


def error_response(
    request: Request,
    code: int,
    message: str,
    kind: str,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """Every error reply: `detail` for people, the request id to quote, and on the OpenAI
    surface OpenAI's `error` object so SDKs show the message (on /v1/messages, Anthropic's)."""
    api = api_for_path(request.url.path)
    if api is not None:
        return api.error_response(code, message, kind, headers)
    body: dict[str, object] = {"detail": message, "request_id": request_id.get()}
    if request.url.path.startswith("/v1/"):
        body["error"] = {"message": message, "type": kind, "code": code}
    return JSONResponse(body, status_code=code, headers=headers)


async def _talktuah_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, TalkTuahError)
    headers = {}
    if isinstance(exc, (EngineLoadingError, RateLimitedError)):
        headers["Retry-After"] = str(exc.retry_after)
    if isinstance(exc, ApiNotSupportedError):
        headers["x-should-retry"] = "false"  # the SDKs retry 5xx; this one stays as it is
    return error_response(request, status_for(exc), str(exc), type(exc).__name__, headers)


async def _bad_request(request: Request, exc: Exception) -> JSONResponse:
    return error_response(request, 400, str(exc), "invalid_request")


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return error_response(
        request, exc.status_code, str(exc.detail), "http_error", getattr(exc, "headers", None)
    )


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    """Flatten FastAPI's list of errors into one sentence, as every other error is."""
    assert isinstance(exc, RequestValidationError)
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error.get("loc", ()) if p not in ("query", "body"))
        parts.append(f"{where}: {error.get('msg', 'invalid')}" if where else error.get("msg"))
    message = "Invalid request: " + "; ".join(str(p) for p in parts) + "."
    return error_response(request, 422, message, "invalid_request")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(TalkTuahError, _talktuah_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(BadRequestError, _bad_request)
    app.add_exception_handler(StarletteHTTPException, _http_error)
