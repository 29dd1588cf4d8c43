"""Fixtures that build TalkTuah around a temp TALKTUAH_HOME and start real peers."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from huggingface_hub import snapshot_download

from talktuah.api import create_app
from talktuah.config import Settings
from talktuah.security import ApiKey
from talktuah.services import Services

from .support.constants import API_KEY
from .support.env import isolate_env
from .support.hub import Hub
from .support.repos import PutModel, model_files

pytest_plugins = ["tests.support.fixtures", "tests.support.engine", "tests.support.apps"]


_FOLDER_MARKS = {"e2e": ("e2e", "slow"), "ui": ("ui", "slow")}
#: Modules outside those folders that cost the inner loop most (`--durations`, issue 20):
#: they start `talktuah serve` or engines, or wait on timeouts and dripping peers by design.
_SLOW_MODULES = {
    "api/test_openapi_fuzz.py",  # schemathesis and hypothesis over every route: ~20 s
    "docs/test_agent_api_docs.py",
    "docs/test_curl_examples.py",
    "docs/test_deploy_files.py",
    "engine/test_supervisor.py",
    "engine/test_pool.py",
    "downloads/test_callback_safety.py",
    "downloads/test_cancel_stalled.py",  # each test waits out a stall timeout: ~5 s
    "test_hub_server.py",
}


def _marks_of(where: Path) -> tuple[str, ...]:
    """The marks every test under `where` (relative to tests/) gets from its place."""
    marks = _FOLDER_MARKS.get(where.parts[0], ()) if where.parts else ()
    return marks + (("slow",) if where.as_posix() in _SLOW_MODULES else ())


def _may_match(markexpr: str, marks: tuple[str, ...]) -> bool:
    """Whether a test carrying `marks` (and any others) can match `-m markexpr`: False only
    if the expression is false for every choice of the test's other marks."""
    try:
        from _pytest.mark.expression import Expression

        expr = Expression.compile(markexpr)
    except Exception:  # a private API moved, or a bad expression pytest will report itself
        return True
    free: list[str] = []  # the other marks the expression asks about, found as it asks

    def holds(chosen: int) -> bool:
        def matcher(name: str, /, **kwargs: object) -> bool:
            key = name + repr(sorted(kwargs.items())) if kwargs else name
            if not kwargs and name in marks:
                return True
            if key not in free:
                free.append(key)
            return bool(chosen >> free.index(key) & 1)

        return expr.evaluate(matcher)

    chosen = 0
    while chosen < 2 ** len(free):
        if len(free) > 10 or holds(chosen):
            return True
        chosen += 1
    return False


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Leave out, without importing them, the folders and modules whose marks `-m` rules
    out: `pytest -m "not slow"` would deselect all their tests anyway, and importing them
    (anthropic, openai, schemathesis, playwright) cost the inner loop ~10 s (issue 20)."""
    markexpr: str = config.option.markexpr
    here = Path(__file__).parent
    if not markexpr or not collection_path.is_relative_to(here):
        return None
    marks = _marks_of(collection_path.relative_to(here))
    return True if marks and not _may_match(markexpr, marks) else None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """tests/e2e and tests/ui are `e2e`/`ui` and `slow` by folder, and the modules in
    _SLOW_MODULES are `slow` (pyproject.toml registers the markers), so `pytest -m "not slow"`
    is the inner loop without a mark in every file."""
    here = Path(__file__).parent
    for item in items:
        for name in _marks_of(item.path.relative_to(here)):
            item.add_marker(name)


@pytest.fixture(scope="session", autouse=True)
def _this_python_first_on_path() -> Iterator[None]:
    """Scripts the tests run by path (`#!/usr/bin/env python3`: the stand-in engine) get the
    interpreter running the tests, not whatever `python3` comes first, e.g. a pyenv shim
    that costs ~0.3 s per start (issue 20)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(
            "PATH", os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])
        )
        yield


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test sees the developer's environment, `.env` or ~/.cache/huggingface."""
    isolate_env(monkeypatch, tmp_path)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def settings(home: Path) -> Settings:
    return Settings(home=home, proxy_api_key=API_KEY)


@pytest.fixture
def services(settings: Settings) -> Iterator[Services]:
    built = Services.build(settings, ApiKey(API_KEY, "env"))
    yield built
    built.close()


@pytest.fixture
def client(services: Services) -> Iterator[TestClient]:
    app = create_app(services, close_on_shutdown=False)
    with TestClient(app, headers={"Authorization": f"Bearer {API_KEY}"}) as test_client:
        yield test_client


@pytest.fixture
def anon_client(services: Services) -> Iterator[TestClient]:
    app = create_app(services, close_on_shutdown=False)
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def put_model(hub: Hub, settings: Settings) -> PutModel:
    """Publish a repo on the test hub and pull it into the models dir with huggingface_hub."""

    def put(model_id: str, files: dict[str, bytes] | None = None, seed: int = 0) -> Path:
        hub.add_repo(model_id, files if files is not None else model_files(seed))
        return Path(snapshot_download(model_id, cache_dir=settings.models_dir, endpoint=hub.url))

    return put
