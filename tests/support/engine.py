"""Fixtures that run TalkTuah in process around the stand-in engine (fake_engine.py)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from talktuah.api import create_app
from talktuah.config import Settings
from talktuah.engine.instance import Clock
from talktuah.security import ApiKey
from talktuah.services import Services

from .constants import API_KEY
from .env import isolate_env
from .eventually import eventually
from .tiny_model import install_in_cache

FAKE_ENGINE = Path(__file__).with_name("fake_engine.py")

# Files shaped like a model: enough for the store to list it complete; the stand-in engine
# never reads them.
MODEL_FILES = {"config.json": json.dumps({"model_type": "llama"}).encode(), "model.bin": b"w"}

MakeClient = Callable[..., TestClient]


@pytest.fixture
def engine_events(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    events = tmp_path / "engine-events.txt"
    monkeypatch.setenv("FAKE_ENGINE_EVENTS", str(events))
    return events


def start_client(home: Path, *, clock: Clock = time.monotonic, **overrides: Any) -> TestClient:
    """TalkTuah in process with the stand-in engine and `org/a`, `org/b` downloaded; the
    caller ends it with `client.__exit__(None, None, None)`. `clock`: what keep-alive and
    restart backoff are measured on (a FakeClock the test advances)."""
    for repo_id in ("org/a", "org/b"):
        install_in_cache(home / "models" / "hub", repo_id, MODEL_FILES | {"id": repo_id.encode()})
    defaults: dict[str, Any] = {
        "home": home, "proxy_api_key": API_KEY, "default_model": "org/a",
        "engine_executable": str(FAKE_ENGINE), "engine_health_interval": 0.2,
        "engine_restart_backoff": 0.1, "engine_start_timeout": 20, "engine_stop_timeout": 3,
    }  # fmt: skip
    services = Services.build(
        Settings(**(defaults | overrides)), ApiKey(API_KEY, "env"), clock=clock
    )
    return TestClient(
        create_app(services), headers={"Authorization": f"Bearer {API_KEY}"}
    ).__enter__()


@contextmanager
def shared_client(root: Path, **overrides: Any) -> Iterator[TestClient]:
    """`start_client` for a module-scoped fixture: one app and engine for the module's tests
    instead of one per test (issue 20: starting them is most of such a test's time). Its
    environment is isolated as each test's is, and the stand-in engine records what it
    receives in `root/engine-events.txt` (the module's `engine_events`)."""
    with pytest.MonkeyPatch.context() as patch:
        isolate_env(patch, root)
        patch.setenv("FAKE_ENGINE_EVENTS", str(root / "engine-events.txt"))
        client = start_client(root / "home", **overrides)
        try:
            yield client
        finally:
            client.__exit__(None, None, None)


@pytest.fixture
def make_client(home: Path, engine_events: Path) -> Iterator[MakeClient]:
    """Start TalkTuah in process with the stand-in engine (see `start_client`)."""
    built: list[TestClient] = []

    def make(**overrides: Any) -> TestClient:
        built.append(start_client(home, **overrides))
        return built[-1]

    yield make
    for client in built:
        client.__exit__(None, None, None)


def wait_status(
    client: TestClient, done: Callable[[dict[str, Any]], bool], timeout: float = 20
) -> dict[str, Any]:
    status: dict[str, Any] = eventually(
        lambda: client.get("/api/model-loading-status").json(),
        done,
        timeout=timeout,
        what="the engine's status",
    )
    return status


CHAT = {"model": "org/a", "messages": [{"role": "user", "content": "hi"}], "stream": False}


def switch_and_wait(client: TestClient, model_id: str) -> dict[str, Any]:
    """Switch to `model_id` and wait until the engine serves it."""
    assert client.post("/api/switch-model", params={"model_id": model_id}).status_code == 202
    return wait_status(client, lambda s: s["status"] == "ready" and s["serving_model"] == model_id)


# What `transformers serve` (5.x) prints when the model's config.json names no
# `architectures`: the traceback ends in a TypeError that does not say why (issue 16).
NO_ARCHITECTURES_LOG = """\
INFO:     Loading org/noarch
Traceback (most recent call last):
  File "/venv/bin/transformers", line 8, in <module>
    sys.exit(main())
  File "/venv/lib/python3.11/site-packages/transformers/cli/serving/model_manager.py", line 160, in __init__
    self.load_model_and_processor(self.process_model_name(repo), gguf_file=gguf_file)
  File "/venv/lib/python3.11/site-packages/transformers/cli/serving/model_manager.py", line 319, in _load_model
    architecture = getattr(transformers, config.architectures[0])
                                         ~~~~~~~~~~~~~~~~~~~~^^^
TypeError: 'NoneType' object is not subscriptable
"""  # noqa: E501


def fail_log(path: Path, text: str = NO_ARCHITECTURES_LOG) -> str:
    """Write an engine log for FAKE_ENGINE_FAIL_LOG; returns its path."""
    path.write_text(text)
    return str(path)
