"""GGUF pulls through the real `talktuah serve` (issue 17): `org/repo:QUANT` fetches that
quant alone, and a model too big for this machine's RAM is refused before its download.

Why end to end: the in-process tests inject the RAM; here the server reads the machine's
own (/proc/meminfo), so the refused model's header says a shape no machine holds (a million
layers), and the hub's request log shows what the real process fetched.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ..support.constants import FAST_DOWNLOADS
from ..support.eventually import eventually
from ..support.gguf_shapes import gguf_with_shape
from ..support.hub import Hub
from ..support.server import TalkTuahProcess

pytestmark = pytest.mark.timeout(90)

REPO = "org/vision-GGUF"
SHARDS = ("Q8_0/model-Q8_0-00001-of-00002.gguf", "Q8_0/model-Q8_0-00002-of-00002.gguf")
MMPROJ = "mmproj-model-f16.gguf"
HUGE = "org/huge-GGUF"


@pytest.fixture
def server(tmp_path: Path, hub: Hub) -> Iterator[TalkTuahProcess]:
    env = {
        **FAST_DOWNLOADS,
        "HF_ENDPOINT": hub.url,
        "HF_HOME": str(tmp_path / "server-hf-home"),
        "TALKTUAH_ENGINE": "llamacpp",  # GGUF models run here: their RAM is this machine's
    }
    proc = TalkTuahProcess(tmp_path / "home", api_key="tt-gguf-e2e-key-0123456789abcdef", env=env)
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


def wait_complete(client: httpx.Client, job_id: str, proc: TalkTuahProcess) -> dict[str, Any]:
    job: dict[str, Any] = eventually(
        lambda: client.get(f"/api/downloads/{job_id}").json(),
        lambda job: job["status"] not in ("queued", "downloading"), timeout=30,
        what=lambda: f"job {job_id} ending\n{proc.log()[-3000:]}",
    )  # fmt: skip
    assert job["status"] == "complete", f"{job}\n{proc.log()[-3000:]}"
    return job


def test_a_tag_fetches_its_shards_and_the_projector_only(server: TalkTuahProcess, hub: Hub) -> None:
    small = {"layers": 2, "embedding": 64, "heads": 4, "kv_heads": 2}
    hub.add_repo(
        REPO,
        {
            "README.md": b"# vision\n",
            "model-Q4_K_M.gguf": gguf_with_shape(**small, padding=8_000),
            SHARDS[0]: gguf_with_shape(**small, padding=12_000),
            SHARDS[1]: b"second shard" * 1000,
            MMPROJ: b"projector" * 1000,
        },
    )
    with server.client() as client:
        started = client.post(
            "/api/download-model", params={"model_id": f"{REPO}:q8_0", "auto": "true"}
        )
        assert started.status_code == 202, started.text
        assert started.json()["model_id"] == f"{REPO}:Q8_0"
        wait_complete(client, started.json()["job_id"], server)
        assert sorted(hub.fetched_files(REPO)) == sorted([*SHARDS, MMPROJ])

        unknown = client.post(
            "/api/download-model", params={"model_id": f"{REPO}:IQ1_S", "auto": "true"}
        )
        assert unknown.status_code == 404
        assert "Available: Q4_K_M (" in unknown.json()["detail"]

        listed = {m["model_id"]: m for m in client.get("/api/models/local").json()["models"]}
        entry = listed[f"{REPO}:Q8_0"]
        assert (entry["format"], entry["quant"], entry["engine"]) == ("gguf", "Q8_0", "llamacpp")
        assert entry["complete"] and list(listed) == [f"{REPO}:Q8_0"]


def test_a_model_no_ram_holds_is_refused_before_its_download(
    server: TalkTuahProcess, hub: Hub
) -> None:
    # A million layers of 2^20 wide: petabytes of KV cache at a 4096-token context.
    huge = {"layers": 2**20, "embedding": 2**20, "heads": 1, "kv_heads": 1}
    hub.add_repo(
        HUGE,
        {
            "huge-Q2_K.gguf": gguf_with_shape(**huge, padding=4_000),
            "huge-Q4_K_M.gguf": gguf_with_shape(**huge, padding=16_000),
        },
    )
    with server.client() as client:
        refused = client.post("/api/download-model", params={"model_id": HUGE, "auto": "true"})
        assert refused.status_code == 507, refused.text
        detail = refused.json()["detail"]
        assert f"{HUGE}:Q4_K_M does not fit in this machine's RAM" in detail
        assert "PiB KV cache for a 4096-token context" in detail  # the number
        assert f"the smallest is {HUGE}:Q2_K" in detail  # and a smaller quant
        resolves = [r for r in hub.requests(repo_id=HUGE) if r.kind == "resolve"]
        assert [(r.method, r.path, r.range is not None) for r in resolves] == [
            ("GET", "huge-Q4_K_M.gguf", True)  # the header's Range GET, nothing more
        ]
        forced = client.post(
            "/api/download-model", params={"model_id": HUGE, "auto": "true", "force": "true"}
        )
        assert forced.status_code == 202, forced.text
        wait_complete(client, forced.json()["job_id"], server)
        assert hub.fetched_files(HUGE) == ["huge-Q4_K_M.gguf"]
