"""/metrics after real work: the counters and histograms hold the right values."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from .support.engine import CHAT, MakeClient, wait_status
from .support.eventually import eventually
from .support.hub import Hub, make_files


def samples(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = client.get("/metrics").text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(found: dict[Any, float], name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_after_a_download_and_chats(make_client: MakeClient, hub: Hub) -> None:
    files = make_files(n_files=2, size=60_000, seed=61)
    hub.add_repo("org/pulled", files)
    client = make_client(hf_endpoint=hub.url, download_disk_margin_bytes=0)
    wait_status(client, lambda s: s["status"] == "ready")
    job = client.post(
        "/api/download-model", params={"model_id": "org/pulled", "auto": "true"}
    ).json()
    eventually(lambda: client.get(f"/api/downloads/{job['job_id']}").json()["status"] == "complete")
    assert client.post("/v1/chat/completions", json=CHAT).status_code == 200
    with client.stream("POST", "/v1/chat/completions", json=CHAT | {"stream": True}) as stream:
        list(stream.iter_lines())
    assert client.post("/v1/chat/completions", json=CHAT | {"model": "org/x"}).status_code == 404

    found = samples(client)
    assert value(found, "talktuah_download_bytes_total") == sum(len(b) for b in files.values())
    assert value(found, "talktuah_download_jobs", status="complete") == 1
    assert value(found, "talktuah_download_jobs", status="downloading") == 0
    chat = "/v1/chat/completions"
    assert value(found, "talktuah_proxy_requests_total", endpoint=chat, stream="False",
                 status="200") == 1  # fmt: skip
    assert value(found, "talktuah_proxy_requests_total", endpoint=chat, stream="True",
                 status="200") == 1  # fmt: skip
    assert value(found, "talktuah_proxy_requests_total", endpoint=chat, stream="False",
                 status="ModelNotServedError") == 1  # fmt: skip
    assert value(found, "talktuah_proxy_time_to_first_byte_seconds_count", endpoint=chat) == 2
    assert value(found, "talktuah_tokens_total", kind="completion") == 2 + 5
    assert value(found, "talktuah_tokens_total", kind="prompt") == 3 + 3
    assert value(found, "talktuah_engine_state", state="ready") == 1
    assert value(found, "talktuah_engine_state", state="failed") == 0
    assert value(found, "talktuah_http_requests_total", method="POST",
                 route="/api/download-model", status="202") == 1  # fmt: skip
    assert value(found, "talktuah_http_request_duration_seconds_count", method="GET",
                 route="/api/downloads/{job_id}") >= 1  # fmt: skip
    assert value(found, "talktuah_models_local") == 3  # org/a, org/b and the pulled one
