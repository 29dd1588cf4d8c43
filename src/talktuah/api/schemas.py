"""What each management route answers, as pydantic models declared with `response_model=`.

They state the field names n8n flows, the dashboard, the CLI and any OpenAPI client already
rely on (none is renamed here), so OpenAPI lists one schema per answer and schemathesis's
response-conformance check (tests/api/test_openapi_fuzz.py) fails when a route drifts from
it. Every model allows extra fields: a field added to an answer reaches clients at once and
is declared here next; nothing a route returns is ever dropped by the model. `/v1` answers
stay the engine's bytes and `/metrics` stays text: neither has a model.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

#: A count or size that may be whole or fractional; a union keeps an int an int in the JSON.
Number = int | float


class Answer(BaseModel):
    """Base of every answer: the declared fields, and any field not declared yet kept."""

    model_config = ConfigDict(extra="allow")


# -- meta ------------------------------------------------------------------------------------


class Root(Answer):
    name: str
    version: str
    endpoints: dict[str, str]


class Health(Answer):
    """`GET /api/healthz`: 200 healthy or degraded, 503 unhealthy, each check's verdict."""

    status: str
    model_loaded: bool
    upstream_healthy: bool
    details: dict[str, str]


# -- downloads -------------------------------------------------------------------------------


class Job(Answer):
    """A download job (`GET /api/downloads/{job_id}`, the progress, the callback's body); the
    idle answer of `/api/download-progress` has the same keys, most of them null."""

    job_id: str | None
    status: str
    progress: Number
    model: str | None
    model_id: str | None
    revision: str | None
    commit_hash: str | None
    error: str | None
    bytes_done: int
    bytes_total: int | None
    files_done: int
    files_total: int | None
    speed_bps: Number | None
    eta_seconds: Number | None
    allow_patterns: list[str] | None
    ignore_patterns: list[str] | None
    activate: bool
    callback_url: str | None
    attempts: int
    created_at: str | None
    started_at: str | None
    updated_at: str | None
    completed_at: str | None


class JobMessage(Job):
    """A job with what just happened to it (queued, already running, cancelling)."""

    message: str
    info: str | None = None


class Instructions(Answer):
    """`POST /api/download-model` without `auto=true`: three ways to fetch it yourself."""

    status: str
    message: str
    model_id: str
    instructions: dict[str, str]
    models_dir: str


class AlreadyDownloaded(Answer):
    """`POST /api/download-model?auto=true` for a model that is here already: no job."""

    status: str
    message: str
    model_id: str
    job_id: None
    info: str


class Downloads(Answer):
    downloads: list[Job]
    count: int


# -- models on disk --------------------------------------------------------------------------


class LocalRevision(Answer):
    commit_hash: str
    refs: list[str]
    size_bytes: int
    files: list[str]
    last_modified: str
    complete: bool


class LocalModel(Answer):
    model_id: str
    size_bytes: int
    size_mb: Number
    revisions: list[LocalRevision]
    last_modified: str
    active: bool
    complete: bool
    path: str
    repo_id: str
    format: str
    quant: str | None
    engine: str


class LocalModels(Answer):
    models: list[LocalModel]
    count: int
    total_size_bytes: int


class ModelStatus(Answer):
    models_available: bool
    models_dir_exists: bool
    models_dir: str
    downloaded_models: list[str]
    current_model: str | None
    vllm_healthy: bool
    message: str


class Deleted(Answer):
    status: str
    model_id: str
    size_mb: Number
    size_bytes: int
    message: str


# -- engine ----------------------------------------------------------------------------------


class ModelAction(Answer):
    """Switch, load or unload: what is happening to which model, and how to follow it."""

    status: str
    model_id: str
    message: str
    info: str | None = None


class Failure(Answer):
    """Why a model's engine failed (`last_failure`, a loaded model's `error`)."""

    model: str
    kind: str  # load | switch | crash | restart
    message: str
    cause: str
    hint: str | None
    log_tail: list[str]
    at: str


class RestartPending(Answer):
    """An automatic restart waiting out its backoff."""

    model: str
    attempt: int
    limit: int
    next_restart_at: str
    seconds_left: Number


class EngineStatus(Answer):
    """`GET /api/model-loading-status`: the default model's engine."""

    status: str
    engine_state: str
    engine: str
    model_loaded: bool
    current_model: str | None
    serving_model: str | None
    loading_model: str | None
    message: str
    restarts: int
    restart_pending: RestartPending | None
    last_failure: Failure | None


class Dismissed(Answer):
    dismissed: bool
    message: str


class LoadedModel(Answer):
    """One engine instance in `GET /api/ps` (Ollama's shape plus our state and failure)."""

    model: str
    state: str
    engine: str
    size_bytes: int
    memory_bytes: int | None
    loaded_at: str | None
    last_used_at: str | None
    expires_at: str | None
    pinned: bool
    in_flight: int
    message: str | None
    error: Failure | None


class LoadedModels(Answer):
    models: list[LoadedModel]


# -- keys ------------------------------------------------------------------------------------


class Key(Answer):
    """An API key as listed: never its plaintext, except `key` once, in the create answer."""

    id: str
    name: str
    prefix: str
    scopes: list[str]
    status: str
    created_at: str
    expires_at: str | None
    last_used_at: str | None
    revoked_at: str | None
    rate_limit: str | None
    proxy_rate_limit: str | None
    max_streams: int | None


class KeyMessage(Key):
    """A key just created (with `key`, shown once) or revoked."""

    message: str
    key: str | None = None


class Keys(Answer):
    keys: list[Key]
    count: int


class AdminKey(Answer):
    key: str
    message: str


# -- storage and hub -------------------------------------------------------------------------


class ModelBytes(Answer):
    model_id: str
    bytes: int


class PartialFile(Answer):
    """A partial download: ours (`partial`, resumable) or the library's (`library_partial`)."""

    model_id: str
    path: str
    bytes: int
    age_seconds: Number
    kind: str
    live: bool


class StorageReport(Answer):
    models_dir: str
    total_bytes: int
    free_bytes: int
    partial_bytes: int
    models: list[ModelBytes]
    partials: list[PartialFile]


class RemovedFile(Answer):
    path: str
    kind: str  # partial | library_partial | lock | blob
    bytes: int


class GarbageCollected(Answer):
    bytes_reclaimed: int
    files_removed: int
    removed: list[RemovedFile]


class HubQuant(Answer):
    tag: str
    model_id: str
    size_bytes: int | None
    files: list[str]
    default: bool
    downloaded: bool


class HubQuants(Answer):
    """`GET /api/hub/quants`: a repo's GGUF quants on the Hub, smallest first."""

    model_id: str
    revision: str
    commit_hash: str
    format: str
    default: str | None
    mmproj: str | None
    quants: list[HubQuant]
