"""Named dependencies, so routers say what they need and not how to get it.

They are `async def` on purpose: FastAPI runs a plain `def` dependency in its thread pool,
a thread hop per request for what is an attribute lookup.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from ..services import Services
from ..state import StateDB
from ..store import ModelStore


async def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


async def get_store(services: Annotated[Services, Depends(get_services)]) -> ModelStore:
    return services.store


async def get_state(services: Annotated[Services, Depends(get_services)]) -> StateDB:
    return services.state


ServicesDep = Annotated[Services, Depends(get_services)]
StoreDep = Annotated[ModelStore, Depends(get_store)]
StateDep = Annotated[StateDB, Depends(get_state)]
