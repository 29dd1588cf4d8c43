"""The one place where TalkTuah's errors become HTTP responses."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import errors as e
from ..agent_apis import api_for_path
from ..logs import request_id

logger = logging.getLogger(__name__)

#: Every TalkTuahError class and its HTTP status (tests/api/test_error_codes.py holds it
#: against the tree in errors.py: each class here, once). The CLI-only ServeError family never
#: reaches HTTP; it is listed so that nothing raised is left unmapped.
STATUS_FOR: dict[type[e.TalkTuahError], int] = {
    e.TalkTuahError: 500,
    e.InvalidInputError: 422,
    e.InvalidModelIdError: 422,
    e.InvalidCallbackUrlError: 422,
    e.InvalidParameterError: 422,
    e.InvalidRevisionError: 422,
    e.BadRequestError: 400,
    e.ModelNotFoundError: 404,
    e.UnknownQuantError: 404,
    e.ModelNotServedError: 404,
    e.JobNotFoundError: 404,
    e.ModelInUseError: 400,
    e.ModelBusyError: 409,
    e.ModelNotReadyError: 409,
    e.HubError: 502,
    e.HubNotFoundError: 404,
    e.HubAccessError: 403,
    e.HubUnavailableError: 502,
    e.HubDataError: 502,
    e.DownloadError: 500,
    e.IntegrityError: 500,
    e.StorageError: 500,
    e.StoragePermissionError: 403,
    e.InsufficientStorageError: 507,
    e.InsufficientMemoryError: 507,
    e.EngineError: 502,
    e.EngineStartError: 500,
    e.EngineUnavailableError: 502,
    e.ModelLoadFailedError: 502,
    e.EngineLoadingError: 503,
    e.PoolFullError: 503,
    e.EngineTimeoutError: 504,
    e.EngineFailedError: 502,
    e.EngineRejectedError: 400,  # the fallback: an instance is sent with the engine's 4xx
    e.SwitchInProgressError: 409,
    e.SwitchNotSupportedError: 409,
    e.ApiNotSupportedError: 501,
    e.ApiKeyError: 400,
    e.KeyNotFoundError: 404,
    e.InvalidKeyRequestError: 422,
    e.KeyRotationError: 409,
    e.RateLimitedError: 429,
    e.ServeError: 500,
    e.InsecureConfigError: 500,
    e.HomeInUseError: 500,
    e.PortUnavailableError: 500,
}

#: The `code` of replies that are no TalkTuahError: FastAPI's and the auth layer's, by status.
#: Stable like the class codes (docs/api/errors.md lists both).
HTTP_CODES: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "request_too_large",
    422: "invalid_request",
    500: "internal_error",
}
#: Names the error body already uses: an error's data may not shadow them.
RESERVED = frozenset({"detail", "code", "request_id", "error", "type"})


class ErrorBody(BaseModel):
    """What every error reply looks like (on /v1 it also carries OpenAI's `error` object)."""

    detail: str
    code: str
    request_id: str | None = None

    model_config = {"extra": "allow"}  # the error's data: model_id, job_id, retry_after, ...


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


def status_for(exc: e.TalkTuahError) -> int:
    if isinstance(exc, e.EngineRejectedError) and 400 <= exc.engine_status < 500:
        return exc.engine_status  # the engine's refusal passes on as it came (a 404, a 422)
    for cls in type(exc).__mro__:
        if cls in STATUS_FOR:
            return STATUS_FOR[cls]
    return 500


def error_response(
    path: str,
    status_code: int,
    message: str,
    kind: str,
    headers: Mapping[str, str] | None = None,
    *,
    code: str | None = None,
    data: Mapping[str, Any] | None = None,
) -> JSONResponse:
    """Every error reply: `detail` for people, `code` and data for programs, the request id
    to quote, and on the OpenAI surface OpenAI's `error` object so SDKs show the message (on
    /v1/messages, Anthropic's)."""
    code = code or HTTP_CODES.get(status_code, "http_error")
    api = api_for_path(path)
    if api is not None:
        return api.error_response(status_code, message, kind, headers, code=code, data=data)
    body: dict[str, object] = {"detail": message, "code": code, **(data or {})}
    body["request_id"] = request_id.get()
    if path.startswith("/v1/"):
        body["error"] = {"message": message, "type": kind, "code": status_code}
    return JSONResponse(body, status_code=status_code, headers=headers)


async def _talktuah_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, e.TalkTuahError)
    return error_reply(request.url.path, exc)


def error_reply(path: str, exc: e.TalkTuahError) -> JSONResponse:
    """The reply to a TalkTuahError raised while answering `path`: its status, `code` and data,
    Retry-After where it says how long to wait, in the shape of `path`'s API."""
    headers = {}
    if isinstance(exc, (e.EngineLoadingError, e.RateLimitedError)):
        headers["Retry-After"] = str(exc.retry_after)
    if isinstance(exc, e.ApiNotSupportedError):
        headers["x-should-retry"] = "false"  # the SDKs retry 5xx; this one stays as it is
    status = status_for(exc)
    kind = _openai_type(exc, status)
    return error_response(path, status, str(exc), kind, headers, code=exc.code, data=exc.data())


def _openai_type(exc: e.TalkTuahError, status: int) -> str:
    """The `type` of OpenAI's error object: the class name, but for a refused body and an
    engine's own answer the types SDKs know for them."""
    if isinstance(exc, e.EngineFailedError):
        return "engine_error"
    if isinstance(exc, e.EngineRejectedError) and status == 404:
        return "not_found"
    if isinstance(exc, (e.BadRequestError, e.EngineRejectedError)):
        return "invalid_request"
    return type(exc).__name__


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    headers = getattr(exc, "headers", None)
    return error_response(request.url.path, exc.status_code, str(exc.detail), "http_error", headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    """Flatten FastAPI's list of errors into one sentence, as every other error is."""
    assert isinstance(exc, RequestValidationError)
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error.get("loc", ()) if p not in ("query", "body"))
        parts.append(f"{where}: {error.get('msg', 'invalid')}" if where else error.get("msg"))
    message = "Invalid request: " + "; ".join(str(p) for p in parts) + "."
    return error_response(request.url.path, 422, message, "invalid_request")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(e.TalkTuahError, _talktuah_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
