"""Settings, read once from the environment and an optional `.env` file.

The `.env` file in the working directory is only ever read: the seed rewrote it to remember
the active model, which made a text file the source of truth. The active model now lives in
SQLite (`state.py`) and `DEFAULT_MODEL` only seeds the very first start.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

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

    # The inference engine (engine/): which driver, and its knobs.
    engine: Literal["transformers", "vllm", "docker", "external"] = "transformers"
    engine_url: str | None = None  # TALKTUAH_ENGINE_URL, for the external driver
    engine_host: str = "127.0.0.1"
    engine_port: int = Field(0, ge=0, le=65535)  # 0: a free port
    engine_start_timeout: float = Field(600.0, gt=0)
    engine_stop_timeout: float = Field(15.0, gt=0)
    engine_health_interval: float = Field(2.0, gt=0)
    engine_restart_limit: int = Field(5, ge=0)
    engine_restart_backoff: float = Field(2.0, ge=0)
    engine_extra_args: list[str] = Field(default_factory=list)  # JSON list in the environment
    engine_executable: str | None = None  # path to `transformers` / `vllm` if not on PATH
    engine_device: str = "auto"
    engine_dtype: str = "auto"
    vllm_tensor_parallel_size: int = Field(1, ge=1)
    vllm_pipeline_parallel_size: int = Field(1, ge=1)
    vllm_gpu_memory_utilization: float = Field(0.9, gt=0, le=1)
    vllm_max_model_len: int | None = Field(None, ge=1)
    vllm_distributed_executor_backend: str | None = None  # "ray" for multi-node
    docker_image: str = "vllm/vllm-openai:latest"
    docker_container_name: str = "talktuah-engine"
    docker_gpus: str = "all"  # "all", a count, or "none"
    docker_shm_size: str = "8g"

    # Per-key limits (each key may override them): requests per window on the management
    # API and on the proxy, in the `limits` notation ("600/minute"), and concurrent streams.
    rate_limit: str = "600/minute"
    proxy_rate_limit: str = "120/minute"
    max_streams: int = Field(8, ge=1)

    # Operations.
    log_format: Literal["text", "json"] = "text"
    log_level: str = "info"
    cors_origins: list[str] = Field(default_factory=list)  # JSON list; empty: CORS off
    max_request_bytes: int = Field(1024 * 1024, ge=1024)  # request bodies larger get 413

    # The proxy in front of the engine.
    proxy_load_wait: float = Field(30.0, ge=0)  # how long a request waits for a loading engine
    proxy_timeout: float = Field(600.0, gt=0)  # upstream read timeout

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
    def engine_dir(self) -> Path:
        """Engine logs, the engine pidfile, and the engine's own HF_HOME."""
        return self.home / "engine"

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
