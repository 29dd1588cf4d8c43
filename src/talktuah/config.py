"""Settings, read once from the environment and an optional `.env` file.

The `.env` file in the working directory is only ever read: the seed rewrote it to remember
the active model, which made a text file the source of truth. The active model now lives in
SQLite (`state.py`) and `DEFAULT_MODEL` only seeds the very first start.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8787


class Settings(BaseSettings):
    """Everything TalkTuah can be told from the outside.

    Environment names are the ones users of the seed already have in their `.env` files
    (`PROXY_API_KEY`, `HF_TOKEN`, `DEFAULT_MODEL`), plus `TALKTUAH_*` for what is new.
    """

    # Our own settings are TALKTUAH_<FIELD> (TALKTUAH_HOME, TALKTUAH_DOWNLOAD_WORKERS, ...).
    # The four names the seed's users already have keep their names through aliases, which
    # equal the field names, so accepting field names in the constructor (`Settings(home=...)`)
    # can never make a generic variable such as `$HOME` leak in.
    model_config = SettingsConfigDict(
        env_prefix="TALKTUAH_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
    )

    home: Path = Field(default_factory=lambda: Path.home() / ".talktuah")
    host: str = DEFAULT_HOST
    port: int = Field(DEFAULT_PORT, ge=1, le=65535)
    proxy_api_key: str = Field("", validation_alias="PROXY_API_KEY", repr=False)
    hf_token: str | None = Field(None, validation_alias="HF_TOKEN", repr=False)
    hf_endpoint: str | None = Field(None, validation_alias="HF_ENDPOINT")
    default_model: str | None = Field(None, validation_alias="DEFAULT_MODEL")
    url: str | None = None  # TALKTUAH_URL: where the CLI finds the server

    # Downloads (see downloads/manager.py for why each exists).
    download_workers: int = Field(2, ge=1, le=16)
    download_retries: int = Field(5, ge=0, le=50)
    download_backoff_seconds: float = Field(1.0, ge=0)
    download_backoff_max_seconds: float = Field(30.0, ge=0)
    download_stall_timeout: float = Field(30.0, gt=0)
    download_chunk_bytes: int = Field(1024 * 1024, ge=1024)
    download_disk_margin_bytes: int = Field(512 * 1024 * 1024, ge=0)
    download_progress_interval: float = Field(0.5, gt=0)
    download_callback_retries: int = Field(3, ge=0, le=10)

    @property
    def server_url(self) -> str:
        """The URL CLI commands call: TALKTUAH_URL, else this machine's host and port."""
        if self.url:
            return self.url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{host}:{self.port}"

    @property
    def models_dir(self) -> Path:
        """The HF hub cache (`models--org--name/...`), shared as-is with engine containers."""
        return self.home / "models" / "hub"

    @property
    def db_path(self) -> Path:
        return self.home / "state.db"

    @property
    def api_key_path(self) -> Path:
        return self.home / "api_key"

    @property
    def is_loopback(self) -> bool:
        return is_loopback_host(self.host)


def is_loopback_host(host: str) -> bool:
    """True when only this machine can reach a server bound to `host`."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
