"""Settings come from the environment and a `.env` file that is read, never written."""

from __future__ import annotations

from pathlib import Path

import pytest

from talktuah.config import Settings, is_loopback_host


def test_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("HOST", "0.0.0.0")  # generic names must not leak into our settings
    monkeypatch.setenv("PORT", "1234")
    settings = Settings()
    assert settings.home == tmp_path / ".talktuah"
    assert (settings.host, settings.port) == ("127.0.0.1", 8787)
    assert settings.models_dir == tmp_path / ".talktuah" / "models" / "hub"
    assert settings.db_path == tmp_path / ".talktuah" / "state.db"
    assert settings.proxy_api_key == ""


def test_environment_names(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TALKTUAH_HOME", str(tmp_path / "h"))
    monkeypatch.setenv("TALKTUAH_HOST", "0.0.0.0")
    monkeypatch.setenv("TALKTUAH_PORT", "9000")
    monkeypatch.setenv("PROXY_API_KEY", "k" * 20)
    monkeypatch.setenv("HF_TOKEN", "hf_abc")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:1")
    monkeypatch.setenv("DEFAULT_MODEL", "org/name")
    settings = Settings()
    assert settings.home == tmp_path / "h"
    assert (settings.host, settings.port) == ("0.0.0.0", 9000)
    assert settings.proxy_api_key == "k" * 20
    assert settings.hf_token == "hf_abc"
    assert settings.hf_endpoint == "http://127.0.0.1:1"
    assert settings.default_model == "org/name"
    assert "hf_abc" not in repr(settings) and "k" * 20 not in repr(settings)


def test_arguments_override_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TALKTUAH_PORT", "9000")
    assert Settings(port=9100).port == 9100


def test_dotenv_is_read_and_left_untouched(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"  # the autouse fixture made tmp_path the working directory
    content = "PROXY_API_KEY=from-dotenv-0123456789\nDEFAULT_MODEL=org/from-dotenv\n"
    dotenv.write_text(content)
    before = dotenv.stat().st_mtime_ns
    settings = Settings()
    assert settings.proxy_api_key == "from-dotenv-0123456789"
    assert settings.default_model == "org/from-dotenv"
    assert dotenv.read_text() == content and dotenv.stat().st_mtime_ns == before


def test_bad_port_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TALKTUAH_PORT", "70000")
    with pytest.raises(ValueError, match="port"):
        Settings()


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("localhost", True), ("::1", True), ("[::1]", True),
     ("127.0.0.2", True), ("0.0.0.0", False), ("::", False), ("192.168.1.5", False),
     ("myhost", False)],
)  # fmt: skip
def test_loopback_detection(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


def test_download_settings_use_the_talktuah_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TALKTUAH_DOWNLOAD_WORKERS", "3")
    monkeypatch.setenv("DOWNLOAD_WORKERS", "9")
    assert Settings().download_workers == 3


def test_server_url_for_the_cli(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().server_url == "http://127.0.0.1:8787"
    assert Settings(host="0.0.0.0", port=9000).server_url == "http://127.0.0.1:9000"
    monkeypatch.setenv("TALKTUAH_URL", "http://gpu-box:8787/")
    assert Settings().server_url == "http://gpu-box:8787"
