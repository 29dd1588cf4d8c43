import time
from fastapi.testclient import TestClient
from tests.support.hub import Hub, make_files


def test_smoke(client: TestClient, hub: Hub, services) -> None:
    services.settings.hf_endpoint = hub.url
    files = make_files(n_files=3, size=300_000, seed=5)
    hub.add_repo("org/dl", files)
    hub.faults.throttle_bps = 2_000_000
    r = client.post("/api/download-model", params={"model_id": "org/dl", "auto": "true"})
    print(r.status_code, r.json())
    seen = []
    for _ in range(100):
        p = client.get("/api/download-progress").json()
        seen.append((p["status"], p["progress"], p["bytes_done"], p["speed_bps"], p["eta_seconds"]))
        if p["status"] not in ("queued", "downloading"):
            break
        time.sleep(0.1)
    print(seen)
    print(p)
    print(client.get("/api/models/local").json())
    r = client.post("/api/download-model", params={"model_id": "org/dl", "auto": "true"})
    print(r.status_code, r.json())
