"""Every error TalkTuah raises on purpose, each with a message that ends with the fix.

Each class has a `code`: snake_case, sent in every error body beside `detail`, and never
changed once published (n8n flows and scripts branch on it; messages may be reworded). Its
`fields` name the instance attributes sent beside it (`model_id`, `job_id`, `retry_after`,
...). Families have a base to catch: `HubError`, `EngineError`, `ApiKeyError`, `StorageError`,
`InvalidInputError`. tests/api/test_error_codes.py holds this tree, each code and status
against the classes and against `STATUS_FOR` in `api/errors.py`.

```
TalkTuahError                   talktuah_error         500  anything else raised on purpose
├── InvalidInputError           invalid_input          422  a parameter we refuse
│   ├── InvalidModelIdError     invalid_model_id       422  a repo id we refuse to touch
│   ├── InvalidCallbackUrlError invalid_callback_url   422  a callback_url we will not call
│   ├── InvalidParameterError   invalid_parameter      422  control characters / over-long text
│   ├── InvalidRevisionError    invalid_revision       422  not a git ref or sha
│   └── BadRequestError         invalid_request_body   400  a /v1 body no engine would accept
├── ModelNotFoundError          model_not_found        404  not in the models dir
│   ├── UnknownQuantError       unknown_quant          404  no such quantization in a GGUF repo
│   └── ModelNotServedError     model_not_served       404  a request names a model not loaded
├── JobNotFoundError            job_not_found          404  no download job with that id
├── ModelInUseError             model_in_use           400  the active model, delete without force
├── ModelBusyError              model_busy             409  a download of it is running
├── ModelNotReadyError          model_not_ready        409  switch to a model still downloading
├── HubError                    hub_error              502  the Hub refused or failed
│   ├── HubNotFoundError        hub_not_found          404  no such repo / revision on the Hub
│   ├── HubAccessError          hub_access_denied      403  gated or private, token missing/denied
│   ├── HubUnavailableError     hub_unavailable        502  the Hub failed after retries
│   └── HubDataError            hub_data_invalid       502  a hostile or malformed value
├── DownloadError               download_failed        500  a transfer failed for good (job error)
│   └── IntegrityError          integrity_mismatch     500  a file's sha256 / git blob id differs
├── StorageError                storage_error          500  the models dir cannot take it
│   ├── StoragePermissionError  storage_read_only      403  the models dir cannot be written
│   └── InsufficientStorageError insufficient_storage  507  the model does not fit on the disk
│       └── InsufficientMemoryError insufficient_memory 507  ... or in RAM (file + KV cache)
├── EngineError                 engine_error           502  the engine failed
│   ├── EngineStartError        engine_start_failed    500  the engine cannot be started
│   ├── EngineUnavailableError  engine_unavailable     502  the engine is down
│   │   └── ModelLoadFailedError model_load_failed     502  the model did not load (log tail)
│   ├── EngineLoadingError      engine_loading         503  still loading after the wait
│   │   └── PoolFullError       pool_full              503  no room: loaded models pinned or busy
│   ├── EngineTimeoutError      engine_timeout         504  the engine did not answer in time
│   ├── EngineFailedError       engine_failed          502  the engine failed on this request
│   ├── EngineRejectedError     engine_rejected        400  the engine refused it (its 4xx as sent)
│   ├── SwitchInProgressError   switch_in_progress     409  a switch is already running
│   ├── SwitchNotSupportedError switch_not_supported   409  the engine is managed elsewhere
│   └── ApiNotSupportedError    api_not_supported      501  the engine lacks this agent API
├── ApiKeyError                 api_key_error          400  an API key operation refused
│   ├── KeyNotFoundError        key_not_found          404  no API key with that id
│   ├── InvalidKeyRequestError  invalid_key_request    422  bad scopes / limits / expiry
│   ├── KeyRotationError        key_rotation_refused   409  the admin key comes from the environment
│   └── RateLimitedError        rate_limited           429  too many requests or streams for a key
└── ServeError                  serve_error            500  `talktuah serve` cannot start (CLI only)
    ├── InsecureConfigError     insecure_config        500  refusing to serve with a weak key
    ├── HomeInUseError          home_in_use            500  another `serve` runs with this home
    └── PortUnavailableError    port_unavailable       500  the port is taken or cannot be bound
```

The HTTP mapping lives in one place, `api/errors.py`; routers never build error responses.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from .sizes import format_bytes


class TalkTuahError(Exception):
    """Base class: catch this to handle anything TalkTuah raises deliberately."""

    #: Stable, snake_case: clients branch on it, so it never changes once published.
    code: ClassVar[str] = "talktuah_error"
    #: The instance attributes sent beside `detail` and `code` (None values are left out).
    fields: ClassVar[tuple[str, ...]] = ()

    def data(self) -> dict[str, Any]:
        """The error's data for its HTTP body: what a client needs to act without parsing
        the message (which model, which job, how long to wait)."""
        values = {name: getattr(self, name, None) for name in self.fields}
        return {name: value for name, value in values.items() if value is not None}


class InvalidInputError(TalkTuahError, ValueError):
    """Family: a parameter or body we refuse before doing anything."""

    code = "invalid_input"


class InvalidModelIdError(InvalidInputError):
    """The model id is not a Hugging Face repo id we are willing to map to a path."""

    code = "invalid_model_id"


class InvalidParameterError(InvalidInputError):
    """A parameter no one means: control characters, or far longer than any real value."""

    code = "invalid_parameter"


class InvalidCallbackUrlError(InvalidInputError):
    """A `callback_url` we will not POST to: not http(s), malformed, or a host that is (or
    resolves to) a loopback, private or link-local address the admin has not allowed."""

    code = "invalid_callback_url"


class InvalidRevisionError(InvalidInputError):
    """The requested revision is not a commit sha or a valid git ref name."""

    code = "invalid_revision"
    fields: ClassVar[tuple[str, ...]] = ("revision",)

    def __init__(self, message: str, *, revision: str | None = None) -> None:
        super().__init__(message)
        self.revision = revision


class BadRequestError(InvalidInputError):
    """The body is not something any OpenAI-compatible engine would accept."""

    code = "invalid_request_body"


class ModelNotFoundError(TalkTuahError, LookupError):
    """The model is not in the local models dir."""

    code = "model_not_found"
    fields: ClassVar[tuple[str, ...]] = ("model_id",)

    def __init__(self, message: str, *, model_id: str | None = None) -> None:
        super().__init__(message)
        self.model_id = model_id


class ModelInUseError(TalkTuahError):
    """The operation would pull the active model out from under the engine."""

    code = "model_in_use"
    fields: ClassVar[tuple[str, ...]] = ("model_id",)

    def __init__(self, message: str, *, model_id: str | None = None) -> None:
        super().__init__(message)
        self.model_id = model_id


class ModelBusyError(TalkTuahError):
    """A download of this model is queued or running: wait for `job_id` or cancel it."""

    code = "model_busy"
    fields: ClassVar[tuple[str, ...]] = ("model_id", "job_id")

    def __init__(
        self, message: str, *, model_id: str | None = None, job_id: str | None = None
    ) -> None:
        super().__init__(message)
        self.model_id = model_id
        self.job_id = job_id


class ModelNotReadyError(TalkTuahError):
    """The model is on disk but not complete (still downloading, or a failed download)."""

    code = "model_not_ready"
    fields: ClassVar[tuple[str, ...]] = ("model_id",)

    def __init__(self, message: str, *, model_id: str | None = None) -> None:
        super().__init__(message)
        self.model_id = model_id


class JobNotFoundError(TalkTuahError, LookupError):
    """No download job has this id."""

    code = "job_not_found"
    fields: ClassVar[tuple[str, ...]] = ("job_id",)

    def __init__(self, message: str, *, job_id: str | None = None) -> None:
        super().__init__(message)
        self.job_id = job_id


class UnknownQuantError(ModelNotFoundError):
    """`org/repo:TAG` names a quantization the GGUF repo does not have (or the repo has no
    GGUF model file at all); the message lists what it has, with sizes."""

    code = "unknown_quant"
    fields: ClassVar[tuple[str, ...]] = ("repo_id", "tag", "available")

    def __init__(
        self, repo_id: str, tag: str | None, available: Sequence[Any], suggest: str | None = None
    ) -> None:
        self.repo_id = repo_id
        self.tag = tag
        self.available = [q.tag for q in available]
        # smallest first: the list is read when choosing what fits
        available = sorted(available, key=lambda q: (q.size is None, q.size or 0))
        if not available:
            message = (
                f"{repo_id} has no GGUF model file (only projectors, imatrix or draft files, "
                "or none at all). Pull a repo with a .gguf model, or drop the ':TAG' to pull "
                "a safetensors model."
            )
        else:
            listed = ", ".join(
                f"{q.tag} ({format_bytes(q.size)})" if q.size is not None else q.tag
                for q in available
            )
            message = (
                f"{repo_id} has no quantization {tag!r}. Available: {listed}. "
                f"Pull one of them, e.g. {repo_id}:{suggest or available[0].tag}."
            )
        super().__init__(message, model_id=repo_id)


class ModelNotServedError(ModelNotFoundError):
    """The request names a model that is not the one being served."""

    code = "model_not_served"


class HubError(TalkTuahError):
    """Family: the Hugging Face Hub refused, failed, or sent something we refuse."""

    code = "hub_error"
    fields: ClassVar[tuple[str, ...]] = ("repo_id", "revision")

    def __init__(
        self, message: str, *, repo_id: str | None = None, revision: str | None = None
    ) -> None:
        super().__init__(message)
        self.repo_id = repo_id
        self.revision = revision


class HubNotFoundError(HubError, ModelNotFoundError):
    """The Hub has no such repo, revision or file (or hides a private one from us)."""

    code = "hub_not_found"
    fields: ClassVar[tuple[str, ...]] = ("repo_id", "revision")

    def __init__(
        self, message: str, *, repo_id: str | None = None, revision: str | None = None
    ) -> None:
        HubError.__init__(self, message, repo_id=repo_id, revision=revision)
        self.model_id = repo_id


class HubAccessError(HubError):
    """The repo is gated or private and our token does not open it."""

    code = "hub_access_denied"


class HubUnavailableError(HubError):
    """The Hub kept failing (5xx, resets, timeouts) after every retry."""

    code = "hub_unavailable"


class DownloadError(TalkTuahError):
    """A download failed for a reason retrying will not fix."""

    code = "download_failed"


class IntegrityError(DownloadError):
    """Downloaded bytes do not match the sha256 (or git blob id) the Hub published for them."""

    code = "integrity_mismatch"


class HubDataError(HubError, DownloadError):
    """The hub sent a value we refuse: an etag, commit or file name that is not what its
    grammar allows (it would become a path), or one that contradicts the file list."""

    code = "hub_data_invalid"


class StorageError(TalkTuahError):
    """Family: the models dir cannot take what was asked."""

    code = "storage_error"


class StoragePermissionError(StorageError, PermissionError):
    """TalkTuah's process may not change the models dir."""

    code = "storage_read_only"


class InsufficientStorageError(StorageError, OSError):
    """Not enough free space in the models dir for what a download still needs."""

    code = "insufficient_storage"


class InsufficientMemoryError(InsufficientStorageError):
    """A GGUF model whose file plus KV cache exceeds this machine's RAM: refused before its
    download (`force=true` overrides). A 507 like a full disk: the model does not fit."""

    code = "insufficient_memory"


class EngineError(TalkTuahError):
    """Family: the inference engine failed, is busy, or cannot do what was asked."""

    code = "engine_error"


class EngineStartError(EngineError):
    """The engine could not be started as configured (binary, image, GPU, model file)."""

    code = "engine_start_failed"


class EngineUnavailableError(EngineError):
    """No engine is serving (stopped, failed, or not reachable)."""

    code = "engine_unavailable"


class ModelLoadFailedError(EngineUnavailableError):
    """The model a request named did not load; the message has the engine's log tail."""

    code = "model_load_failed"
    fields: ClassVar[tuple[str, ...]] = ("model_id",)

    def __init__(self, message: str, *, model_id: str | None = None) -> None:
        super().__init__(message)
        self.model_id = model_id


class EngineLoadingError(EngineError):
    """The engine is still loading a model; retry after `retry_after` seconds."""

    code = "engine_loading"
    fields: ClassVar[tuple[str, ...]] = ("retry_after", "model_id")

    def __init__(self, message: str, retry_after: int, *, model_id: str | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.model_id = model_id


class PoolFullError(EngineLoadingError):
    """No room to load the model: every model that would have to go is pinned or busy."""

    code = "pool_full"


class EngineTimeoutError(EngineError):
    """The engine accepted the request but did not answer in time."""

    code = "engine_timeout"


class EngineFailedError(EngineError):
    """The engine answered this request with a failure (a 5xx, or a body that is not JSON);
    the message has its answer. `engine_status` is the status it answered with."""

    code = "engine_failed"
    fields: ClassVar[tuple[str, ...]] = ("engine_status",)

    def __init__(self, message: str, *, engine_status: int) -> None:
        super().__init__(message)
        self.engine_status = engine_status


class EngineRejectedError(EngineError):
    """The engine refused this request (a 4xx: a parameter it does not take, a route it does
    not offer). Its status is passed on as it came (`engine_status`), its message in ours."""

    code = "engine_rejected"
    fields: ClassVar[tuple[str, ...]] = ("engine_status",)

    def __init__(self, message: str, *, engine_status: int) -> None:
        super().__init__(message)
        self.engine_status = engine_status


class SwitchInProgressError(EngineError):
    """Another switch is running; one at a time."""

    code = "switch_in_progress"


class SwitchNotSupportedError(EngineError):
    """The engine is run outside TalkTuah (TALKTUAH_ENGINE=external): it cannot switch."""

    code = "switch_not_supported"


class ApiNotSupportedError(EngineError):
    """The serving engine does not implement the agent API asked for (agent_apis/); the
    message names the engines that do. Permanent until the engine changes: clients are
    told not to retry."""

    code = "api_not_supported"
    fields: ClassVar[tuple[str, ...]] = ("api", "engine", "engines")

    def __init__(self, message: str, *, api: str, engine: str, engines: Sequence[str]) -> None:
        super().__init__(message)
        self.api = api
        self.engine = engine
        self.engines = tuple(engines)


class ApiKeyError(TalkTuahError):
    """Family: an API key operation refused, or a key over its limits."""

    code = "api_key_error"


class KeyNotFoundError(ApiKeyError, LookupError):
    """No API key has this id."""

    code = "key_not_found"
    fields: ClassVar[tuple[str, ...]] = ("key_id",)

    def __init__(self, message: str, *, key_id: str | None = None) -> None:
        super().__init__(message)
        self.key_id = key_id


class InvalidKeyRequestError(ApiKeyError, ValueError):
    """A key cannot be created as asked (unknown scope, bad limit, expiry in the past)."""

    code = "invalid_key_request"


class KeyRotationError(ApiKeyError):
    """The admin key cannot be rotated by TalkTuah (it comes from the environment)."""

    code = "key_rotation_refused"


class RateLimitedError(ApiKeyError):
    """This key used up its requests for the window, or its concurrent streams."""

    code = "rate_limited"
    fields: ClassVar[tuple[str, ...]] = ("retry_after",)

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ServeError(TalkTuahError):
    """Family: `talktuah serve` refuses to start (the CLI prints these; no HTTP reply)."""

    code = "serve_error"


class InsecureConfigError(ServeError):
    """The configuration would expose the API with a guessable key."""

    code = "insecure_config"


class HomeInUseError(ServeError):
    """Another `talktuah serve` holds this TALKTUAH_HOME: a second would share its state.db
    and stop its engine as an orphan."""

    code = "home_in_use"


class PortUnavailableError(ServeError, OSError):
    """`talktuah serve` cannot listen on its host and port (taken, or not this machine's)."""

    code = "port_unavailable"
