"""A Hub URL pasted as `model_id` downloads that repo at the URL's revision (issue 16)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from ..support.downloads import WaitFor
from ..support.hub import Hub, make_files


def test_a_pasted_tree_url_downloads_its_repo_and_revision(
    client: TestClient, hub: Hub, wait_for: WaitFor
) -> None:
    sha = hub.add_repo("org/pasted", make_files(n_files=1, size=20_000, seed=61))
    url = f"https://huggingface.co/org/pasted/tree/{sha}"
    response = client.post("/api/download-model", params={"model_id": url, "auto": "true"})
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["model_id"] == "org/pasted" and job["revision"] == sha
    assert wait_for(job["job_id"])["status"] == "complete"
    again = client.post(
        "/api/download-model", params={"model_id": "https://hf.co/org/pasted/", "auto": "true"}
    )
    assert again.status_code in (200, 202) and again.json()["model_id"] == "org/pasted"
    assert again.json().get("revision") in (None, "main")


def test_an_unreadable_url_is_answered_with_a_suggestion(client: TestClient) -> None:
    url = "https://huggingface.co/org/pasted/discussions/1"
    response = client.post("/api/download-model", params={"model_id": url, "auto": "true"})
    assert response.status_code == 422
    assert "Did you mean org/pasted?" in response.json()["detail"]
