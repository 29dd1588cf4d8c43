"""The one place where TalkTuah's errors become HTTP responses."""

from __future__ import annotations

from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from ..errors import (
    EngineError,
    EngineLoadingError,
    EngineTimeoutError,
    EngineUnavailableError,
    HubAccessError,
    HubUnavailableError,
    InsufficientStorageError,
    InvalidKeyRequestError,
    InvalidModelIdError,
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
    TalkTuahError,
)
from ..proxy import BadRequestError

STATUS_FOR: dict[type[TalkTuahError], int] = {
    InvalidModelIdError: status.HTTP_422_UNPROCESSABLE_CONTENT,
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
    EngineError: status.HTTP_500_INTERNAL_SERVER_ERROR,
    EngineUnavailableError: status.HTTP_502_BAD_GATEWAY,
    EngineLoadingError: status.HTTP_503_SERVICE_UNAVAILABLE,
    EngineTimeoutError: status.HTTP_504_GATEWAY_TIMEOUT,
    KeyNotFoundError: status.HTTP_404_NOT_FOUND,
    InvalidKeyRequestError: status.HTTP_422_UNPROCESSABLE_CONTENT,
    RateLimitedError: status.HTTP_429_TOO_MANY_REQUESTS,
    KeyRotationError: status.HTTP_409_CONFLICT,
}


def status_for(exc: TalkTuahError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS_FOR:
            return STATUS_FOR[cls]
    return status.HTTP_500_INTERNAL_SERVER_ERROR


async def _talktuah_error(request: Request, exc: Exception) -> JSONResponse:
    """`{"detail": ...}` for everyone; OpenAI-style `error` too on the OpenAI surface."""
    assert isinstance(exc, TalkTuahError)
    code = status_for(exc)
    body: dict[str, object] = {"detail": str(exc)}
    if request.url.path.startswith("/v1/"):
        body["error"] = {"message": str(exc), "type": type(exc).__name__, "code": code}
    headers = {}
    if isinstance(exc, (EngineLoadingError, RateLimitedError)):
        headers["Retry-After"] = str(exc.retry_after)
    return JSONResponse(body, status_code=code, headers=headers)


async def _bad_request(request: Request, exc: Exception) -> JSONResponse:
    message = str(exc)
    return JSONResponse(
        {"detail": message, "error": {"message": message, "type": "invalid_request", "code": 400}},
        status_code=status.HTTP_400_BAD_REQUEST,
    )


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    """Flatten FastAPI's list of errors into one sentence, as every other error is."""
    assert isinstance(exc, RequestValidationError)
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error.get("loc", ()) if p not in ("query", "body"))
        parts.append(f"{where}: {error.get('msg', 'invalid')}" if where else error.get("msg"))
    return JSONResponse(
        {"detail": "Invalid request: " + "; ".join(str(p) for p in parts) + "."},
        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(TalkTuahError, _talktuah_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(BadRequestError, _bad_request)
