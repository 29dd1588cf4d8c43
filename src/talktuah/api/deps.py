"""Named dependencies, so routers say what they need and not how to get it.

They are `async def` on purpose: FastAPI runs a plain `def` dependency in its thread pool,
a thread hop per request for what is an attribute lookup.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from ..downloads.manager import DownloadManager
from ..engine.supervisor import EngineSupervisor
from ..keys import KeyStore
from ..services import Services
from ..store import ModelStore


async def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


async def get_store(services: Annotated[Services, Depends(get_services)]) -> ModelStore:
    return services.store


async def get_downloads(services: Annotated[Services, Depends(get_services)]) -> DownloadManager:
    return services.downloads


async def get_engine(services: Annotated[Services, Depends(get_services)]) -> EngineSupervisor:
    return services.engine


async def get_keys(services: Annotated[Services, Depends(get_services)]) -> KeyStore:
    return services.keys


#: Everything: for routes that use several services or a use case of Services itself.
ServicesDep = Annotated[Services, Depends(get_services)]
#: One service each: what a route that needs only it takes.
StoreDep = Annotated[ModelStore, Depends(get_store)]
DownloadsDep = Annotated[DownloadManager, Depends(get_downloads)]
EngineDep = Annotated[EngineSupervisor, Depends(get_engine)]
KeysDep = Annotated[KeyStore, Depends(get_keys)]
