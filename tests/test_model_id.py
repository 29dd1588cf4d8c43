"""ModelId: a model id checked once, where it comes in (issue 20).

Why: the check used to run again in every layer an id passed through (the route, the store,
the engine, the download manager). Now the route's parse step makes a ModelId and the layers
below take it as it is, while a plain str handed to a service (a value read back from the
state database, a test, a caller without a route) is still checked before it becomes a path.
"""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from talktuah import model_id as module
from talktuah.errors import InvalidModelIdError
from talktuah.model_id import ModelId
from talktuah.services import Services

from .support.repos import PutModel


@pytest.fixture
def checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every repo id checked from now on."""
    seen: list[str] = []
    check = module.validate_model_id

    def counted(repo_id: str) -> str:
        seen.append(repo_id)
        return check(repo_id)

    monkeypatch.setattr(module, "validate_model_id", counted)
    return seen


def test_a_model_id_is_checked_and_canonical() -> None:
    model_id = ModelId("org/a:q8_0")
    assert model_id == "org/a:Q8_0" and isinstance(model_id, str)
    assert json.dumps({"model_id": model_id}) == '{"model_id": "org/a:Q8_0"}'
    assert {model_id: 1}["org/a:Q8_0"] == 1
    for hostile in ("../x", "org/..", "/etc/passwd", "org/a/b", "org/a\\b:Q8_0"):
        with pytest.raises(InvalidModelIdError):
            ModelId(hostile)


def test_a_checked_id_is_not_checked_again(checks: list[str]) -> None:
    model_id = ModelId("org/a")
    assert ModelId(model_id) is model_id
    assert checks == ["org/a"]


def test_the_store_checks_a_plain_str(services: Services) -> None:
    for call in (services.store.get, services.store.delete):
        with pytest.raises(InvalidModelIdError):
            call("../etc")


def test_a_route_checks_the_id_once(
    client: TestClient, put_model: PutModel, checks: list[str]
) -> None:
    put_model("org/gone")
    deleted = client.delete("/api/delete-model", params={"model_id": "org/gone"})
    assert deleted.status_code == 200, deleted.text
    assert checks == ["org/gone"], "the route, the services and the store checked it once"
    checks.clear()
    assert client.get("/api/download-progress", params={"model_id": "org/a"}).status_code == 200
    assert client.post("/api/unload-model", params={"model_id": "org/a"}).status_code == 404
    assert checks == ["org/a", "org/a"]
