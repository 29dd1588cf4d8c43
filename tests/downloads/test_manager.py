"""The download manager against the real test hub, through the API in process."""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from talktuah.downloads.jobs import DownloadJob, JobStatus, PlannedFile
from talktuah.downloads.manager import DownloadRequest
from talktuah.services import Services

from ..support.downloads import WaitFor, start_download
from ..support.eventually import eventually
from ..support.fs import small_filesystem
from ..support.hub import DEFAULT_TOKEN, Hub, make_files


def snapshot_files(services: Services, model_id: str) -> dict[str, bytes]:
    (model,) = [m for m in services.store.list() if m.model_id == model_id]
    snapshot = Path(model.path) / "snapshots" / model.revisions[0].commit_hash
    return {f: (snapshot / f).read_bytes() for f in model.revisions[0].files}


def incomplete_files(services: Services) -> list[Path]:
    return list(services.store.models_dir.glob("*/blobs/*.incomplete"))


def local(client: TestClient) -> dict[str, bool]:
    models = client.get("/api/models/local").json()["models"]
    return {m["model_id"]: m["complete"] for m in models}


def test_multi_file_download_is_byte_identical_with_monotonic_progress(
    client: TestClient, services: Services, hub: Hub
) -> None:
    files = make_files(n_files=3, size=200_000, seed=1)
    hub.add_repo("org/multi", files)
    hub.faults.throttle_bps = 800_000
    job = start_download(client, "org/multi")
    assert job["bytes_total"] == sum(len(b) for b in files.values())
    assert job["files_total"] == len(files)

    polls: list[dict[str, Any]] = []  # every answer on the way, for the checks below

    def poll() -> dict[str, Any]:
        polls.append(client.get("/api/download-progress", params={"job_id": job["job_id"]}).json())
        return polls[-1]

    final = eventually(
        poll, lambda p: p["status"] not in ("queued", "downloading"), interval=0.03,
        what="the download ending",
    )  # fmt: skip
    assert final["status"] == "complete" and final["progress"] == 100
    assert final["bytes_done"] == final["bytes_total"] == job["bytes_total"]
    assert final["files_done"] == len(files)
    during = [p for p in polls if p["status"] == "downloading"]
    assert len({p["bytes_done"] for p in during}) >= 5, "progress must move in bytes, not files"
    for before, after in zip(polls, polls[1:], strict=False):
        assert after["bytes_done"] >= before["bytes_done"]
        assert after["progress"] >= before["progress"]
    assert all(p["progress"] < 100 for p in during)
    assert any(p["speed_bps"] and p["eta_seconds"] is not None for p in during)
    assert snapshot_files(services, "org/multi") == files
    assert local(client) == {"org/multi": True}
    (refs,) = [m["revisions"][0]["refs"] for m in client.get("/api/models/local").json()["models"]]
    assert refs == ["main"], "engines resolve 'main' offline through refs/main"


def test_two_downloads_run_and_a_third_waits(
    client: TestClient, hub: Hub, wait_for: WaitFor
) -> None:
    for seed in range(3):
        hub.add_repo(f"org/m{seed}", make_files(n_files=1, size=150_000, seed=seed))
    hub.faults.throttle_bps = 300_000
    jobs = [start_download(client, f"org/m{seed}") for seed in range(3)]
    states = [wait_for(j["job_id"], lambda j: j["status"] == "downloading") for j in jobs[:2]]
    assert [s["status"] for s in states] == ["downloading", "downloading"]
    assert client.get(f"/api/downloads/{jobs[2]['job_id']}").json()["status"] == "queued"
    finals = [wait_for(j["job_id"]) for j in jobs]
    assert [f["status"] for f in finals] == ["complete"] * 3
    listed = client.get("/api/downloads").json()
    assert listed["count"] == 3


def test_twenty_concurrent_requests_create_one_job(services: Services, hub: Hub) -> None:
    hub.add_repo("org/popular", make_files(n_files=1, size=100_000, seed=2))
    hub.faults.throttle_bps = 500_000
    outcomes = []
    barrier = threading.Barrier(20)

    def ask() -> None:
        barrier.wait()
        outcomes.append(services.downloads.request(DownloadRequest("org/popular")))

    threads = [threading.Thread(target=ask) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(outcomes) == 20
    assert len({o.job.id for o in outcomes if o.job is not None}) == 1
    assert sum(o.created for o in outcomes) == 1
    assert [j.model_id for j in services.downloads.jobs.recent()] == ["org/popular"]


def test_a_model_already_on_disk_is_complete_without_asking_the_hub(
    client: TestClient, hub: Hub, wait_for: WaitFor
) -> None:
    hub.add_repo("org/done", make_files(n_files=1, size=10_000, seed=3))
    wait_for(start_download(client, "org/done")["job_id"])
    hub.clear_log()
    again = client.post("/api/download-model", params={"model_id": "org/done", "auto": "true"})
    assert again.status_code == 200 and again.json()["status"] == "complete"
    assert hub.log == [], "an already complete model must not touch the hub"


def test_a_live_job_is_returned_not_duplicated(client: TestClient, hub: Hub) -> None:
    hub.add_repo("org/slow", make_files(n_files=1, size=200_000, seed=4))
    hub.faults.throttle_bps = 100_000
    first = start_download(client, "org/slow")
    again = client.post("/api/download-model", params={"model_id": "org/slow", "auto": "true"})
    assert again.status_code == 200 and again.json()["job_id"] == first["job_id"]
    client.delete(f"/api/downloads/{first['job_id']}")


def test_cancel_stops_within_seconds_and_nothing_is_listed_complete(
    client: TestClient, services: Services, hub: Hub, wait_for: WaitFor
) -> None:
    hub.add_repo("org/big", make_files(n_files=3, size=400_000, seed=5))
    hub.faults.throttle_bps = 200_000
    job = start_download(client, "org/big")
    wait_for(job["job_id"], lambda j: j["bytes_done"] > 250_000)
    started = time.monotonic()
    response = client.delete(f"/api/downloads/{job['job_id']}")
    assert response.status_code == 200
    final = wait_for(job["job_id"], timeout=5)
    assert final["status"] == "cancelled" and time.monotonic() - started < 5
    assert local(client).get("org/big") is not True
    assert incomplete_files(services) == []
    again = client.delete(f"/api/downloads/{job['job_id']}")
    assert again.status_code == 200 and again.json()["status"] == "cancelled"


def test_cancel_a_queued_job(client: TestClient, hub: Hub, wait_for: WaitFor) -> None:
    for seed in range(3):
        hub.add_repo(f"org/q{seed}", make_files(n_files=1, size=200_000, seed=seed))
    hub.faults.throttle_bps = 200_000
    jobs = [start_download(client, f"org/q{seed}") for seed in range(3)]
    cancelled = client.delete(f"/api/downloads/{jobs[2]['job_id']}").json()
    assert cancelled["status"] == "cancelled"
    for job in jobs[:2]:
        client.delete(f"/api/downloads/{job['job_id']}")
    for job in jobs:
        assert wait_for(job["job_id"])["status"] == "cancelled"


def test_corrupted_blob_fails_the_job_and_is_removed(
    client: TestClient, services: Services, hub: Hub, wait_for: WaitFor
) -> None:
    files = make_files(n_files=2, size=50_000, seed=6)
    hub.add_repo("org/corrupt", files)
    hub.faults.corrupt("org/corrupt", "model-00002-of-00002.safetensors")
    final = wait_for(start_download(client, "org/corrupt")["job_id"])
    assert final["status"] == "error"
    assert "model-00002-of-00002.safetensors" in final["error"] and "sha256" in final["error"]
    assert local(client).get("org/corrupt") is not True
    bad = hashlib.sha256(files["model-00002-of-00002.safetensors"]).hexdigest()
    assert not list(services.store.models_dir.glob(f"*/blobs/{bad}"))
    assert "model-00002-of-00002.safetensors" not in snapshot_files(services, "org/corrupt")


@pytest.mark.slow  # a stalled transfer is waited out (the stall timeout) among retries: ~3 s
def test_transient_faults_are_retried_until_complete(
    client: TestClient, services: Services, hub: Hub, wait_for: WaitFor
) -> None:
    files = make_files(n_files=2, size=100_000, seed=7)
    hub.add_repo("org/flaky", files)
    # Content GETs only: huggingface_hub retries a failing HEAD itself for ~23 s, while a
    # failing GET comes straight back to our retry loop.
    hub.faults.fail_next(2, status=503, path_glob="*.safetensors", method="GET")
    hub.faults.drop_after(30_000, path_glob="model-00002*")
    hub.faults.stall(3, after_bytes=10_000, path_glob="model-00001*")
    final = wait_for(start_download(client, "org/flaky")["job_id"], timeout=30)
    assert final["status"] == "complete", final
    assert snapshot_files(services, "org/flaky") == files
    statuses = [r.status for r in hub.requests(repo_id="org/flaky")]
    assert statuses.count(503) == 2
    assert hub.faults.pending() == 0


def test_a_hub_that_stays_down_ends_in_error_with_the_cause(
    client: TestClient, hub: Hub, wait_for: WaitFor
) -> None:
    hub.add_repo("org/down", make_files(n_files=1, size=50_000, seed=8))
    hub.faults.fail_next(1000, status=503, path_glob="*.safetensors", method="GET")
    final = wait_for(start_download(client, "org/down")["job_id"], timeout=30)
    assert final["status"] == "error"
    assert "after 4 attempts" in final["error"] and "503" in final["error"]
    assert local(client).get("org/down") is not True


@pytest.mark.parametrize(
    ("model_id", "params", "status", "fragment"),
    [
        ("org/missing", {}, 404, "org/missing was not found on the Hub"),
        ("org/real", {"revision": "v9"}, 404, "Revision 'v9'"),
        ("org/gated", {}, 403, "HF_TOKEN"),
        ("org/real", {"allow_patterns": "*.gguf"}, 404, "No file"),
        ("org/real", {"callback_url": "ftp://x"}, 422, "callback_url"),
    ],
)
def test_bad_requests_fail_at_once_and_create_no_job(
    client: TestClient,
    hub: Hub,
    model_id: str,
    params: dict[str, str],
    status: int,
    fragment: str,
) -> None:
    hub.add_repo("org/real", make_files(n_files=1, size=2_000, seed=9))
    hub.add_repo("org/gated", make_files(n_files=1, size=2_000, seed=10), gated=True)
    response = client.post(
        "/api/download-model", params={"model_id": model_id, "auto": "true", **params}
    )
    assert response.status_code == status, response.text
    assert fragment in response.json()["detail"]
    assert client.get("/api/downloads").json()["count"] == 0


def test_gated_repo_downloads_with_a_token(
    client: TestClient, services: Services, hub: Hub, wait_for: WaitFor
) -> None:
    hub.add_repo("org/gated", make_files(n_files=1, size=2_000, seed=10), gated=True)
    services.settings.hf_token = DEFAULT_TOKEN
    final = wait_for(start_download(client, "org/gated")["job_id"])
    assert final["status"] == "complete"


def test_disk_preflight_refuses_what_does_not_fit(
    client: TestClient, services: Services, hub: Hub
) -> None:
    hub.add_repo("org/huge", make_files(n_files=1, size=5_000, seed=11))
    services.settings.download_disk_margin_bytes = 10**18
    response = client.post("/api/download-model", params={"model_id": "org/huge", "auto": "true"})
    assert response.status_code == 507
    assert "Not enough disk space" in response.json()["detail"]
    assert client.get("/api/downloads").json()["count"] == 0
    assert local(client) == {}


def test_a_real_small_filesystem_is_refused(
    client: TestClient, services: Services, hub: Hub
) -> None:
    """A 1 MiB tmpfs under the models dir: the preflight reads the real free space."""
    with small_filesystem(services.store.models_dir, "1m"):
        hub.add_repo("org/toobig", make_files(n_files=2, size=1_000_000, seed=12))
        response = client.post(
            "/api/download-model", params={"model_id": "org/toobig", "auto": "true"}
        )
        assert response.status_code == 507, response.text
        assert "1.9 MiB" in response.json()["detail"]
        assert local(client) == {}


def test_delete_is_refused_while_downloading(
    client: TestClient, hub: Hub, wait_for: WaitFor
) -> None:
    hub.add_repo("org/busy", make_files(n_files=2, size=200_000, seed=13))
    hub.faults.throttle_bps = 150_000
    job = start_download(client, "org/busy")
    wait_for(job["job_id"], lambda j: j["files_done"] >= 1)
    refused = client.delete("/api/delete-model", params={"model_id": "org/busy"})
    assert refused.status_code == 409
    assert f"DELETE /api/downloads/{job['job_id']}" in refused.json()["detail"]
    client.delete(f"/api/downloads/{job['job_id']}")


def test_activate_and_patterns(
    client: TestClient, services: Services, hub: Hub, wait_for: WaitFor
) -> None:
    files = make_files(n_files=2, size=5_000, seed=14)
    hub.add_repo("org/pick", files)
    job = start_download(client, "org/pick", activate="true", allow_patterns="*.json,model-00001*")
    assert job["allow_patterns"] == ["*.json", "model-00001*"]
    assert wait_for(job["job_id"])["status"] == "complete"
    assert set(snapshot_files(services, "org/pick")) == {
        "config.json", "tokenizer_config.json", "model-00001-of-00002.safetensors",
    }  # fmt: skip
    assert client.get("/api/model-status").json()["current_model"] == "org/pick"


def test_progress_without_jobs_is_idle_and_unknown_ids_are_404(client: TestClient) -> None:
    idle = client.get("/api/download-progress").json()
    assert idle["status"] == "idle" and idle["progress"] == 0 and idle["model"] is None
    missing = client.get("/api/download-progress", params={"job_id": "nope"})
    assert missing.status_code == 404 and "GET /api/downloads" in missing.json()["detail"]
    assert client.delete("/api/downloads/nope").status_code == 404
    assert client.get("/api/downloads/nope/events").status_code == 404


def test_progress_by_model_and_latest(client: TestClient, hub: Hub, wait_for: WaitFor) -> None:
    hub.add_repo("org/a", make_files(n_files=1, size=1_000, seed=15))
    hub.add_repo("org/b", make_files(n_files=1, size=1_000, seed=16))
    a = wait_for(start_download(client, "org/a")["job_id"])
    b = wait_for(start_download(client, "org/b")["job_id"])
    by_model = client.get("/api/download-progress", params={"model_id": "org/a"}).json()
    assert by_model["job_id"] == a["job_id"]
    assert client.get("/api/download-progress").json()["job_id"] == b["job_id"]


def test_percent_is_100_only_when_complete() -> None:
    job = DownloadJob(
        id="j", model_id="o/m", revision="main", status=JobStatus.DOWNLOADING,
        created_at="", updated_at="", bytes_done=10, bytes_total=10,
        files=[PlannedFile("f", 10, None)],
    )  # fmt: skip
    assert job.progress == 99, "bytes are in but verification has not finished"
    job.status = JobStatus.COMPLETE
    assert job.progress == 100


def test_an_unreachable_hub_at_planning_is_502_not_500(client: TestClient, hub: Hub) -> None:
    """Regression: a refused connection while listing the repo's files answered 500."""
    hub.stop()
    response = client.post("/api/download-model", params={"model_id": "org/any", "auto": "true"})
    assert response.status_code == 502
    assert "Cannot reach the Hub" in response.json()["detail"]
    assert client.get("/api/downloads").json()["count"] == 0


def test_offline_mode_at_planning_is_502_with_the_fix(
    client: TestClient, hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub.constants as hf_constants

    hub.add_repo("org/any", make_files(n_files=1, size=1_000, seed=17))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    response = client.post("/api/download-model", params={"model_id": "org/any", "auto": "true"})
    assert response.status_code == 502 and "HF_HUB_OFFLINE" in response.json()["detail"]
