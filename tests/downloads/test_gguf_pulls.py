"""GGUF pulls (issue 17): `org/repo:QUANT` fetches one quant, never the whole repo.

Why: a GGUF repo holds one model in many quantizations, often 10-100x one quant's size.
Every tool our users compare us with picks the quant at pull time, with llama.cpp's rule
(the tag, else Q4_K_M, then Q8_0, then the first model file). The hub's request log proves
which files moved. Listing and deleting work per quant: deleting one keeps the others.
"""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from talktuah.services import Services
from talktuah.store import ModelStore

from ..support.downloads import WaitFor, start_download
from ..support.hub import Hub

REPO = "org/multi-GGUF"
SHARDS = ("BF16/model-BF16-00001-of-00002.gguf", "BF16/model-BF16-00002-of-00002.gguf")
MMPROJ = "mmproj-model-F16.gguf"


def gguf_repo(hub: Hub, repo: str = REPO) -> dict[str, bytes]:
    """Several quants, a sharded one in its own folder, a projector, and files a GGUF pull
    needs none of."""
    files = {
        "README.md": b"# a GGUF repo\n",
        "config.json": b"{}",
        "model-Q2_K.gguf": b"GGUF-q2" * 1000,
        "model-Q4_K_M.gguf": b"GGUF-q4km" * 2000,
        "model-Q8_0.gguf": b"GGUF-q8" * 4000,
        SHARDS[0]: b"GGUF-bf16-a" * 3000,
        SHARDS[1]: b"GGUF-bf16-b" * 3000,
        MMPROJ: b"GGUF-mmproj" * 500,
        "imatrix.gguf": b"imatrix" * 100,
    }
    hub.add_repo(repo, files)
    return files


def pull(client: TestClient, wait_for: WaitFor, model_id: str) -> dict[str, object]:
    started = start_download(client, model_id)
    job = wait_for(started["job_id"])
    assert job["status"] == "complete", job
    return started


def delete(client: TestClient, model_id: str, **params: str) -> int:
    response = client.delete("/api/delete-model", params={"model_id": model_id, **params})
    return response.status_code


def entries(client: TestClient) -> dict[str, dict[str, object]]:
    return {m["model_id"]: m for m in client.get("/api/models/local").json()["models"]}


def test_a_tag_fetches_only_its_file_and_the_projector(
    client: TestClient, hub: Hub, wait_for: WaitFor
) -> None:
    gguf_repo(hub)
    started = pull(client, wait_for, f"{REPO}:q8_0")  # tags are case-insensitive
    assert started["model_id"] == started["model"] == f"{REPO}:Q8_0"
    assert sorted(hub.fetched_files(REPO)) == sorted(["model-Q8_0.gguf", MMPROJ])
    heads = {r.path for r in hub.requests(method="HEAD", repo_id=REPO)}
    assert heads <= {"model-Q8_0.gguf", MMPROJ}  # nothing else was even looked at


def test_no_tag_fetches_q4_k_m(client: TestClient, hub: Hub, wait_for: WaitFor) -> None:
    gguf_repo(hub)
    started = pull(client, wait_for, REPO)
    assert started["model_id"] == f"{REPO}:Q4_K_M"  # the job names the quant it fetches
    assert sorted(hub.fetched_files(REPO)) == sorted(["model-Q4_K_M.gguf", MMPROJ])
    progress = client.get("/api/download-progress", params={"model_id": REPO}).json()
    assert progress["job_id"] == started["job_id"]  # polled by the id that was asked for

    # Asked again: it is here (no file list fetched), under the quant's id.
    hub.clear_log()
    again = client.post("/api/download-model", params={"model_id": REPO, "auto": "true"})
    assert again.status_code == 200 and again.json()["status"] == "complete", again.text
    assert again.json()["model_id"] == f"{REPO}:Q4_K_M"
    assert hub.requests(repo_id=REPO) == []


def test_a_sharded_tag_fetches_every_shard(
    client: TestClient, hub: Hub, wait_for: WaitFor, settings: object
) -> None:
    files = gguf_repo(hub)
    pull(client, wait_for, f"{REPO}:bf16")
    assert sorted(hub.fetched_files(REPO)) == sorted([*SHARDS, MMPROJ])
    (entry,) = [e for e in entries(client).values() if e["quant"] == "BF16"]
    assert entry["complete"] and entry["size_bytes"] == sum(len(files[s]) for s in SHARDS)


def test_an_unknown_tag_is_404_listing_the_quants(client: TestClient, hub: Hub) -> None:
    gguf_repo(hub)
    response = client.post(
        "/api/download-model", params={"model_id": f"{REPO}:Q3_K_L", "auto": "true"}
    )
    assert response.status_code == 404, response.text
    detail = response.json()["detail"]
    for listed in ("Q2_K (6.8 KiB)", "Q4_K_M (17.6 KiB)", "Q8_0 (27.3 KiB)", "BF16 (64.5 KiB)"):
        assert listed in detail
    assert detail.index("Q2_K") < detail.index("Q4_K_M") < detail.index("BF16")  # by size
    assert detail.endswith(f"e.g. {REPO}:Q4_K_M.")  # what `{REPO}` alone means
    assert hub.fetched_files(REPO) == []


def test_a_tag_on_a_safetensors_repo_is_404(client: TestClient, hub: Hub) -> None:
    hub.add_repo("org/plain", {"config.json": b"{}", "model.safetensors": b"x" * 100})
    response = client.post(
        "/api/download-model", params={"model_id": "org/plain:Q8_0", "auto": "true"}
    )
    assert response.status_code == 404
    assert "no GGUF model file" in response.json()["detail"]


def test_a_tag_outside_the_grammar_is_422(client: TestClient) -> None:
    for bad in (f"{REPO}:Q4/../x", f"{REPO}:", f"{REPO}:a:b"):
        response = client.post("/api/download-model", params={"model_id": bad, "auto": "true"})
        assert response.status_code == 422, (bad, response.text)


def test_listing_has_one_entry_per_quant_and_deleting_one_keeps_the_other(
    client: TestClient, services: Services, hub: Hub, wait_for: WaitFor, settings: object
) -> None:
    files = gguf_repo(hub)
    pull(client, wait_for, f"{REPO}:Q8_0")
    pull(client, wait_for, f"{REPO}:Q4_K_M")
    listed = entries(client)
    q4, q8 = listed[f"{REPO}:Q4_K_M"], listed[f"{REPO}:Q8_0"]
    for entry, name in ((q4, "model-Q4_K_M.gguf"), (q8, "model-Q8_0.gguf")):
        assert entry["format"] == "gguf" and entry["repo_id"] == REPO
        assert entry["complete"] and entry["size_bytes"] == len(files[name])
        assert entry["revisions"][0]["files"] == sorted([name, MMPROJ])
    assert q4["quant"] == "Q4_K_M" and q8["quant"] == "Q8_0"
    assert q4["engine"] == "external"  # the engine configured for these tests runs it
    under_auto = ModelStore(services.store.models_dir, services.state, engine="auto")
    assert {m.model_id: m.engine for m in under_auto.list()} == {
        f"{REPO}:Q4_K_M": "llamacpp",
        f"{REPO}:Q8_0": "llamacpp",
    }
    # `org/repo` is the quant llama.cpp's rule picks among those here.
    assert services.store.get(REPO).model_id == f"{REPO}:Q4_K_M"
    assert services.store.get(f"{REPO}:q8_0").model_id == f"{REPO}:Q8_0"

    snapshot = Path(str(q4["path"])) / "snapshots" / str(q4["revisions"][0]["commit_hash"])
    deleted = client.delete("/api/delete-model", params={"model_id": f"{REPO}:Q8_0"})
    assert deleted.status_code == 200, deleted.text
    assert deleted.json()["model_id"] == f"{REPO}:Q8_0"
    assert deleted.json()["size_bytes"] == len(files["model-Q8_0.gguf"])
    assert not (snapshot / "model-Q8_0.gguf").exists()
    for kept in ("model-Q4_K_M.gguf", MMPROJ):
        assert (snapshot / kept).read_bytes() == files[kept]  # byte for byte
    listed = entries(client)
    assert list(listed) == [f"{REPO}:Q4_K_M"] and listed[f"{REPO}:Q4_K_M"]["complete"]
    assert delete(client, f"{REPO}:Q8_0") == 404

    # Pulled again, Q8_0 is fetched and verified anew, and both are complete.
    hub.clear_log()
    pull(client, wait_for, f"{REPO}:Q8_0")
    assert hub.fetched_files(REPO) == ["model-Q8_0.gguf"]
    assert all(e["complete"] for e in entries(client).values())

    # Deleting the repo removes every quant.
    assert delete(client, REPO) == 200
    assert entries(client) == {}


def test_deleting_the_last_quant_removes_the_repo(
    client: TestClient, hub: Hub, wait_for: WaitFor
) -> None:
    gguf_repo(hub)
    started = pull(client, wait_for, f"{REPO}:Q2_K")
    path = Path(str(entries(client)[str(started["model_id"])]["path"]))
    assert delete(client, f"{REPO}:Q2_K") == 200
    assert not path.exists()  # the projector went with it


def test_the_active_quant_needs_force(
    client: TestClient, services: Services, hub: Hub, wait_for: WaitFor
) -> None:
    gguf_repo(hub)
    pull(client, wait_for, f"{REPO}:Q8_0")
    pull(client, wait_for, f"{REPO}:Q4_K_M")
    services.state.active_model = f"{REPO}:Q8_0"
    refused = client.delete("/api/delete-model", params={"model_id": f"{REPO}:Q8_0"})
    assert refused.status_code == 400
    assert delete(client, f"{REPO}:Q4_K_M") == 200
    forced = client.delete(
        "/api/delete-model", params={"model_id": f"{REPO}:Q8_0", "force": "true"}
    )
    assert forced.status_code == 200 and services.state.active_model is None


def test_hub_quants_lists_a_repo_before_a_pull(
    client: TestClient, hub: Hub, wait_for: WaitFor
) -> None:
    """The dashboard's pull form shows what `org/repo:TAG` would fetch, and its size."""
    files = gguf_repo(hub)
    pull(client, wait_for, f"{REPO}:Q8_0")
    hub.clear_log()
    answer = client.get("/api/hub/quants", params={"model_id": REPO})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["format"] == "gguf" and body["default"] == "Q4_K_M" and body["mmproj"] == MMPROJ
    assert [q["tag"] for q in body["quants"]] == ["Q2_K", "Q4_K_M", "Q8_0", "BF16"]  # by size
    by_tag = {q["tag"]: q for q in body["quants"]}
    assert by_tag["BF16"]["files"] == list(SHARDS)
    assert by_tag["BF16"]["size_bytes"] == sum(len(files[s]) for s in SHARDS)
    assert by_tag["Q4_K_M"]["default"] and not by_tag["Q8_0"]["default"]
    assert by_tag["Q8_0"]["downloaded"] and not by_tag["Q4_K_M"]["downloaded"]
    assert by_tag["Q8_0"]["model_id"] == f"{REPO}:Q8_0"
    assert hub.fetched_files(REPO) == []  # the file list only

    hub.add_repo("org/plain", {"config.json": b"{}", "model.safetensors": b"x" * 100})
    plain = client.get("/api/hub/quants", params={"model_id": "org/plain"}).json()
    assert plain["format"] == "safetensors" and plain["quants"] == [] and plain["default"] is None
    assert client.get("/api/hub/quants", params={"model_id": "org/none"}).status_code == 404
    assert client.get("/api/hub/quants", params={"model_id": "../x"}).status_code == 422


def test_instructions_for_a_quant_name_its_files(client: TestClient) -> None:
    """auto=false: `hf download` has no tags, so the command names the quant's files."""
    answer = client.post("/api/download-model", params={"model_id": f"{REPO}:q8_0"}).json()
    assert answer["model_id"] == f"{REPO}:Q8_0"
    commands = answer["instructions"]
    assert commands["cli"] == f"talktuah pull {REPO}:Q8_0"
    assert commands["hf"].startswith(f'hf download {REPO} --include "*Q8_0*" "*q8_0*" ')
    assert f"model_id={REPO}:Q8_0&auto=true" in commands["api"]
