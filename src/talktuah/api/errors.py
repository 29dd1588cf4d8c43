"""The one place where TalkTuah's errors become HTTP responses."""

from __future__ import annotations

from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from ..errors import (
    HubAccessError,
    HubUnavailableError,
    InsufficientStorageError,
    InvalidModelIdError,
    JobNotFoundError,
    ModelBusyError,
    ModelInUseError,
    ModelNotFoundError,
    StoragePermissionError,
    TalkTuahError,
)

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
}


def status_for(exc: TalkTuahError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS_FOR:
            return STATUS_FOR[cls]
    return status.HTTP_500_INTERNAL_SERVER_ERROR


async def _talktuah_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, TalkTuahError)
    return JSONResponse({"detail": str(exc)}, status_code=status_for(exc))


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
