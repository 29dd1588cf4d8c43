"""The model routes, in process, against a models dir filled from the test hub.

Tests that only read, or whose requests are refused, share the module's app
(`module_app`); those that add, delete or break models have their own."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from talktuah.services import Services

from ..support.apps import App
from ..support.fs import read_only, tree_snapshot
from ..support.repos import PutModel, model_files
from ..support.tiny_model import install_in_cache
from ..test_store import HOSTILE_IDS


def test_root_lists_endpoints_including_delete(module_app: App) -> None:
    body = module_app.anon_client.get("/").json()
    assert body["name"] == "TalkTuah" and body["version"]
    assert body["endpoints"]["delete_model"] == "/api/delete-model"


def test_healthz_without_an_engine_is_degraded(module_app: App) -> None:
    """No model active: the database and disk are fine, but nothing can answer chats."""
    body = module_app.anon_client.get("/api/healthz").json()
    assert body["status"] == "degraded"
    assert body["details"]["database"] == "ok" and body["details"]["models_dir"] == "ok"
    assert body["details"]["engine"].startswith("transformers: stopped")
    assert body["model_loaded"] is False and body["upstream_healthy"] is False


def test_healthz_degraded_without_models_dir(anon_client: TestClient, services: Services) -> None:
    services.store.models_dir.rmdir()
    body = anon_client.get("/api/healthz").json()
    assert body["status"] == "degraded" and body["details"]["models_dir"] == "missing"
    assert str(services.store.models_dir) not in json.dumps(body), "public: no paths"


def test_metrics_are_prometheus_text(module_app: App) -> None:
    module_app.anon_client.get("/")
    text = module_app.anon_client.get("/metrics").text
    assert "talktuah_build_info" in text
    assert 'talktuah_http_requests_total{method="GET",route="/",status="200"}' in text


def test_model_status_and_local_list(
    client: TestClient, services: Services, put_model: PutModel
) -> None:
    empty = client.get("/api/model-status").json()
    assert empty["models_available"] is False and empty["downloaded_models"] == []
    assert empty["models_dir_exists"] is True and empty["current_model"] is None
    put_model("org/alpha", seed=1)
    services.state.active_model = "org/alpha"
    status = client.get("/api/model-status").json()
    assert status["downloaded_models"] == ["org/alpha"]
    assert status["current_model"] == "org/alpha"
    assert status["vllm_healthy"] is False and "org/alpha" in status["message"]
    local = client.get("/api/models/local").json()
    assert local["count"] == 1
    (model,) = local["models"]
    assert model["model_id"] == "org/alpha" and model["active"] and model["complete"]
    assert model["size_bytes"] == local["total_size_bytes"] > 0
    assert model["revisions"][0]["refs"] == ["main"]


def test_manual_download_instructions(module_client: TestClient) -> None:
    response = module_client.post("/api/download-model", params={"model_id": "org/name"})
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "manual" and body["model_id"] == "org/name"
    steps = body["instructions"]
    assert "/api/download-model?model_id=org/name&auto=true" in steps["api"]
    assert steps["cli"] == "talktuah pull org/name"
    assert steps["hf"].startswith("hf download org/name --cache-dir ")
    assert not any(".sh" in step for step in steps.values())


def test_delete_status_codes(client: TestClient, services: Services, put_model: PutModel) -> None:
    put_model("org/active", seed=1)
    put_model("org/other", seed=2)
    services.state.active_model = "org/active"

    unknown = client.delete("/api/delete-model", params={"model_id": "org/unknown"})
    assert unknown.status_code == 404 and "org/unknown" in unknown.json()["detail"]

    refused = client.delete("/api/delete-model", params={"model_id": "org/active"})
    assert refused.status_code == 400 and "force=true" in refused.json()["detail"]

    ok = client.delete("/api/delete-model", params={"model_id": "org/other"})
    assert ok.status_code == 200
    assert ok.json()["status"] == "deleted" and ok.json()["model_id"] == "org/other"

    forced = client.delete("/api/delete-model", params={"model_id": "org/active", "force": True})
    assert forced.status_code == 200 and forced.json()["size_mb"] >= 0
    assert client.get("/api/models/local").json()["models"] == []
    assert client.get("/api/model-status").json()["current_model"] is None


def test_delete_in_read_only_models_dir_is_403(
    client: TestClient, services: Services, put_model: PutModel
) -> None:
    put_model("org/locked")
    with read_only(services.store.models_dir):
        response = client.delete("/api/delete-model", params={"model_id": "org/locked"})
    assert response.status_code == 403
    assert "Permission denied" in response.json()["detail"]
    assert [m["model_id"] for m in client.get("/api/models/local").json()["models"]] == [
        "org/locked"
    ]


@pytest.fixture(scope="module")
def safe_app(module_app: App) -> App:
    """The module's app with `org/safe` downloaded: what a hostile id must not reach."""
    install_in_cache(module_app.services.store.models_dir, "org/safe", model_files())
    return module_app


@pytest.mark.parametrize("model_id", HOSTILE_IDS)
def test_hostile_ids_get_422_and_touch_nothing(safe_app: App, model_id: str) -> None:
    before = tree_snapshot(safe_app.root)
    for method, path in [("DELETE", "/api/delete-model"), ("POST", "/api/download-model")]:
        params = {"model_id": model_id, "force": "true", "auto": "false"}
        response = safe_app.client.request(method, path, params=params)
        assert response.status_code == 422, (method, model_id, response.text)
        assert isinstance(response.json()["detail"], str)
    assert tree_snapshot(safe_app.root) == before


def test_missing_parameter_is_a_readable_422(module_client: TestClient) -> None:
    response = module_client.delete("/api/delete-model")
    assert response.status_code == 422
    assert response.json()["detail"] == "Invalid request: model_id: Field required."
