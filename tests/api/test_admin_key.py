"""Admin-key rotation lives in the service layer (Services.rotate_admin_key); the route only
calls it and shapes the answer (issue 20: one home per use case)."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from talktuah.api import create_app
from talktuah.config import Settings
from talktuah.security import ApiKey
from talktuah.services import Services

from ..support.constants import API_KEY


def test_a_generated_admin_key_rotates_and_the_old_one_stops(tmp_path: Path) -> None:
    services = Services.build(Settings(home=tmp_path / "home"), ApiKey(API_KEY, "file"))
    try:
        app = create_app(services, close_on_shutdown=False)
        with TestClient(app, headers={"Authorization": f"Bearer {API_KEY}"}) as client:
            answer = client.post("/api/keys/rotate-admin")
            assert answer.status_code == 200, answer.text
            new = answer.json()["key"]
            assert services.keys.env_key.value == new != API_KEY
            assert services.settings.api_key_path.read_text().strip() == new
            assert client.get("/api/keys").json()["code"] == "unauthorized"
            fresh = {"Authorization": f"Bearer {new}"}
            assert client.get("/api/keys", headers=fresh).status_code == 200
    finally:
        services.close()


def test_a_key_from_the_environment_is_not_rotated(client: TestClient) -> None:
    refused = client.post("/api/keys/rotate-admin")
    assert refused.status_code == 409 and refused.json()["code"] == "key_rotation_refused"
    assert "PROXY_API_KEY" in refused.json()["detail"]
