"""TalkTuah in process for a whole test module (loaded via ``pytest_plugins``).

Why: a test's own app (conftest's `client`) costs more than most API tests themselves do:
FastAPI builds each route's validators on an app's first requests (~0.15 s, more under
load), for every new app. Tests whose requests leave nothing another test could see
(refused input, reads) share one app per module instead (issue 20); a test that changes
what others read keeps its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from talktuah.api import create_app
from talktuah.config import Settings
from talktuah.security import ApiKey
from talktuah.services import Services

from .constants import API_KEY
from .env import isolate_env


@dataclass(frozen=True)
class App:
    root: Path  # its home is root/home
    services: Services
    client: TestClient  # sends the admin key
    anon_client: TestClient  # sends no key


@contextmanager
def running_app(root: Path, **overrides: Any) -> Iterator[App]:
    """An app on `root/home` with the admin key API_KEY (Settings `overrides` on top), its
    environment isolated as each test's is, for as long as the context lasts."""
    with pytest.MonkeyPatch.context() as patch:
        isolate_env(patch, root)
        settings = Settings(**({"home": root / "home", "proxy_api_key": API_KEY} | overrides))
        services = Services.build(settings, ApiKey(API_KEY, "env"))
        app = create_app(services, close_on_shutdown=False)
        try:
            with (
                TestClient(app, headers={"Authorization": f"Bearer {API_KEY}"}) as client,
                TestClient(app) as anon_client,
            ):
                yield App(root, services, client, anon_client)
        finally:
            services.close()


@pytest.fixture(scope="module")
def module_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    """One app for the module's tests that leave nothing behind (see the module's doc)."""
    with running_app(tmp_path_factory.mktemp("app")) as app:
        yield app


@pytest.fixture
def module_client(module_app: App) -> TestClient:
    """The module's app, with the admin key."""
    return module_app.client


@pytest.fixture
def module_anon_client(module_app: App) -> TestClient:
    """The module's app, without a key."""
    return module_app.anon_client
