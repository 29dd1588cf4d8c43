"""Bearer-key authentication for every non-public route."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from .deps import ServicesDep

_bearer = HTTPBearer(auto_error=False, description="PROXY_API_KEY, or $TALKTUAH_HOME/api_key")

_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def require_api_key(
    services: ServicesDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail=(
                "Missing API key. Send the header 'Authorization: Bearer <key>' with the "
                "PROXY_API_KEY of this server (printed at first start and stored in "
                "$TALKTUAH_HOME/api_key)."
            ),
            headers=_CHALLENGE,
        )
    if not services.api_key.matches(credentials.credentials):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail=(
                "Invalid API key. Use the PROXY_API_KEY this server was started with "
                "(see $TALKTUAH_HOME/api_key when it was generated)."
            ),
            headers=_CHALLENGE,
        )


AuthDep = Depends(require_api_key)
