"""API keys: create (the plaintext is shown once), list, revoke. Admin only."""

from __future__ import annotations

from fastapi import APIRouter, status
from pydantic import BaseModel, Field

from ...keys import MAX_EXPIRES_IN_DAYS, MAX_STREAMS
from .. import schemas
from ..deps import KeysDep, ServicesDep

router = APIRouter(prefix="/api", tags=["keys"])


class KeyRequest(BaseModel):
    """The bounds are declared here so that OpenAPI shows them and NaN, Infinity or huge
    numbers get a 422 before KeyStore.create (which checks them again for other callers)."""

    name: str = Field(description="Who or what uses it, e.g. 'n8n workflow'", max_length=100)
    scopes: list[str] = Field(description="infer, models:read, models:write, admin")
    expires_in_days: float | None = Field(
        None, description="Unset: never expires", gt=0, le=MAX_EXPIRES_IN_DAYS, allow_inf_nan=False
    )
    rate_limit: str | None = Field(
        None, description="Management API, e.g. '100/minute'", max_length=100
    )
    proxy_rate_limit: str | None = Field(
        None, description="Proxy, e.g. '30/minute'", max_length=100
    )
    max_streams: int | None = Field(
        None, description="Concurrent proxy streams", ge=1, le=MAX_STREAMS
    )


@router.post(
    "/keys",
    status_code=status.HTTP_201_CREATED,
    response_model=schemas.KeyMessage,
    response_model_exclude_unset=True,
)
def create_key(keys: KeysDep, body: KeyRequest) -> schemas.KeyMessage:
    key = keys.create(
        body.name,
        body.scopes,
        expires_in_days=body.expires_in_days,
        rate_limit=body.rate_limit,
        proxy_rate_limit=body.proxy_rate_limit,
        max_streams=body.max_streams,
    )
    return schemas.KeyMessage(**key.to_api(), message="Store the key now: it is not shown again.")


@router.post("/keys/rotate-admin", response_model=schemas.AdminKey)
def rotate_admin_key(services: ServicesDep) -> schemas.AdminKey:
    """A new generated admin key, effective at once; the old one stops working."""
    new = services.rotate_admin_key()
    return schemas.AdminKey(
        key=new.value,
        message=f"The admin key was replaced and stored in {services.settings.api_key_path}; "
        "the old one no longer works.",
    )


@router.get("/keys", response_model=schemas.Keys)
def list_keys(keys: KeysDep) -> schemas.Keys:
    listed = keys.list()
    return schemas.Keys(keys=[schemas.Key(**k.to_api()) for k in listed], count=len(listed))


@router.delete(
    "/keys/{key_id}", response_model=schemas.KeyMessage, response_model_exclude_unset=True
)
def revoke_key(keys: KeysDep, key_id: str) -> schemas.KeyMessage:
    key = keys.revoke(key_id)
    message = f"Key {key.name!r} is revoked; it stops working now."
    return schemas.KeyMessage(**key.to_api(), message=message)
