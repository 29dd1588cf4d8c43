"""Named dependencies, so routers say what they need and not how to get it."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from ..services import Services
from ..state import StateDB
from ..store import ModelStore


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def get_store(services: Annotated[Services, Depends(get_services)]) -> ModelStore:
    return services.store


def get_state(services: Annotated[Services, Depends(get_services)]) -> StateDB:
    return services.state


ServicesDep = Annotated[Services, Depends(get_services)]
StoreDep = Annotated[ModelStore, Depends(get_store)]
StateDep = Annotated[StateDB, Depends(get_state)]
