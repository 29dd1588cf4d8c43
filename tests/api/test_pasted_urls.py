"""Hub URLs pasted into switch-model and delete-model name their repo (issue 16)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from ..support.engine import MakeClient, switch_and_wait, wait_status
from ..support.repos import PutModel


def test_switch_to_a_pasted_url(make_client: MakeClient) -> None:
    client = make_client()
    wait_status(client, lambda s: s["status"] == "ready")
    url = "https://huggingface.co/org/b/tree/main"
    response = client.post("/api/switch-model", params={"model_id": url})
    assert response.status_code == 202, response.text
    assert response.json()["model_id"] == "org/b"
    wait_status(client, lambda s: s["status"] == "ready" and s["serving_model"] == "org/b")
    switch_and_wait(client, "org/a")


def test_delete_a_pasted_url(client: TestClient, put_model: PutModel) -> None:
    put_model("org/gone", seed=3)
    url = "https://www.huggingface.co/org/gone/resolve/main/config.json"
    response = client.delete("/api/delete-model", params={"model_id": url})
    assert response.status_code == 200, response.text
    assert response.json()["model_id"] == "org/gone"
    assert client.get("/api/models/local").json()["models"] == []
    github = client.delete("/api/delete-model", params={"model_id": "https://github.com/o/n"})
    assert github.status_code == 422 and "Did you mean o/n?" in github.json()["detail"]
