"""Every error TalkTuah raises on purpose, each with a message that ends with the fix.

```
TalkTuahError
├── InvalidModelIdError        a repo id we refuse to touch            -> 422
├── InvalidCallbackUrlError    a callback_url we will not call         -> 422
├── InvalidParameterError      control characters / over-long text     -> 422
├── ModelNotFoundError         not in the models dir                   -> 404
│   ├── HubNotFoundError       no such repo / revision on the Hub      -> 404
│   └── UnknownQuantError      no such quantization in a GGUF repo     -> 404
├── JobNotFoundError           no download job with that id            -> 404
├── ModelInUseError            the active model, delete without force  -> 400
├── ModelBusyError             a download of it is running             -> 409
├── StoragePermissionError     the models dir cannot be written        -> 403
├── HubAccessError             gated or private, token missing/denied  -> 403
├── HubUnavailableError        the Hub failed after retries            -> 502
├── InsufficientStorageError   the model does not fit on the disk      -> 507
│   └── InsufficientMemoryError  ... or in RAM (file + KV cache)       -> 507
├── InvalidRevisionError       a revision that is not a git ref or sha  -> 422
├── DownloadError              a transfer failed for good (job error)
│   ├── IntegrityError         a file's sha256 / git blob id differs
│   └── HubDataError           the hub sent a hostile or malformed value -> 502
├── ModelNotReadyError         switch to a model still downloading     -> 409
├── SwitchInProgressError      a switch is already running             -> 409
├── EngineError                the engine cannot be started            -> 500
├── SwitchNotSupportedError    the engine is managed elsewhere          -> 409
├── EngineUnavailableError     the engine is down                      -> 502
│   └── ModelLoadFailedError   the requested model did not load (log tail) -> 502
├── EngineLoadingError         still loading after the wait            -> 503
│   └── PoolFullError          no room: the loaded models are pinned/busy -> 503
├── EngineTimeoutError         the engine did not answer in time       -> 504
├── ModelNotServedError        a request names another model           -> 404
├── ApiNotSupportedError       the engine lacks this agent API         -> 501
├── KeyNotFoundError           no API key with that id                 -> 404
├── InvalidKeyRequestError     bad scopes / limits / expiry            -> 422
├── KeyRotationError           the admin key comes from the environment -> 409
├── RateLimitedError           too many requests or streams for a key  -> 429
├── InsecureConfigError        refusing to serve with a weak key       (CLI only)
├── HomeInUseError             another `serve` runs with this home     (CLI only)
└── PortUnavailableError       the port is taken or cannot be bound    (CLI only)
```

The HTTP mapping lives in one place, `api/errors.py`; routers never build error responses.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .sizes import format_bytes


class TalkTuahError(Exception):
    """Base class: catch this to handle anything TalkTuah raises deliberately."""


class InvalidModelIdError(TalkTuahError, ValueError):
    """The model id is not a Hugging Face repo id we are willing to map to a path."""


class InvalidParameterError(TalkTuahError, ValueError):
    """A parameter no one means: control characters, or far longer than any real value."""


class InvalidCallbackUrlError(TalkTuahError, ValueError):
    """A `callback_url` we will not POST to: not http(s), malformed, or a host that is (or
    resolves to) a loopback, private or link-local address the admin has not allowed."""


class ModelNotFoundError(TalkTuahError, LookupError):
    """The model is not in the local models dir."""


class ModelInUseError(TalkTuahError):
    """The operation would pull the active model out from under the engine."""


class ModelBusyError(TalkTuahError):
    """A download of this model is queued or running."""


class StoragePermissionError(TalkTuahError, PermissionError):
    """TalkTuah's process may not change the models dir."""


class InsecureConfigError(TalkTuahError):
    """The configuration would expose the API with a guessable key."""


class HomeInUseError(TalkTuahError):
    """Another `talktuah serve` holds this TALKTUAH_HOME: a second would share its state.db
    and stop its engine as an orphan."""


class PortUnavailableError(TalkTuahError, OSError):
    """`talktuah serve` cannot listen on its host and port (taken, or not this machine's)."""


class HubNotFoundError(ModelNotFoundError):
    """The Hub has no such repo, revision or file (or hides a private one from us)."""


class UnknownQuantError(ModelNotFoundError):
    """`org/repo:TAG` names a quantization the GGUF repo does not have (or the repo has no
    GGUF model file at all); the message lists what it has, with sizes."""

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
        super().__init__(message)


class JobNotFoundError(TalkTuahError, LookupError):
    """No download job has this id."""


class HubAccessError(TalkTuahError):
    """The repo is gated or private and our token does not open it."""


class HubUnavailableError(TalkTuahError):
    """The Hub kept failing (5xx, resets, timeouts) after every retry."""


class InsufficientStorageError(TalkTuahError, OSError):
    """Not enough free space in the models dir for what a download still needs."""


class InsufficientMemoryError(InsufficientStorageError):
    """A GGUF model whose file plus KV cache exceeds this machine's RAM: refused before its
    download (`force=true` overrides). A 507 like a full disk: the model does not fit."""


class DownloadError(TalkTuahError):
    """A download failed for a reason retrying will not fix."""


class IntegrityError(DownloadError):
    """Downloaded bytes do not match the sha256 (or git blob id) the Hub published for them."""


class HubDataError(DownloadError):
    """The hub sent a value we refuse: an etag, commit or file name that is not what its
    grammar allows (it would become a path), or one that contradicts the file list."""


class InvalidRevisionError(TalkTuahError, ValueError):
    """The requested revision is not a commit sha or a valid git ref name."""


class ModelNotReadyError(TalkTuahError):
    """The model is on disk but not complete (still downloading, or a failed download)."""


class SwitchInProgressError(TalkTuahError):
    """Another switch is running; one at a time."""


class EngineError(TalkTuahError):
    """The engine could not be started as configured."""


class EngineUnavailableError(TalkTuahError):
    """No engine is serving (stopped, failed, or not reachable)."""


class EngineLoadingError(TalkTuahError):
    """The engine is still loading a model; retry after a while."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ModelLoadFailedError(EngineUnavailableError):
    """The model a request named did not load; the message has the engine's log tail."""


class PoolFullError(EngineLoadingError):
    """No room to load the model: every model that would have to go is pinned or busy."""


class EngineTimeoutError(TalkTuahError):
    """The engine accepted the request but did not answer in time."""


class ModelNotServedError(ModelNotFoundError):
    """The request names a model that is not the one being served."""


class ApiNotSupportedError(TalkTuahError):
    """The serving engine does not implement the agent API asked for (agent_apis/); the
    message names the engines that do. Permanent until the engine changes: clients are
    told not to retry."""

    def __init__(self, message: str, *, api: str, engine: str, engines: Sequence[str]) -> None:
        super().__init__(message)
        self.api = api
        self.engine = engine
        self.engines = tuple(engines)


class KeyNotFoundError(TalkTuahError, LookupError):
    """No API key has this id."""


class InvalidKeyRequestError(TalkTuahError, ValueError):
    """A key cannot be created as asked (unknown scope, bad limit, expiry in the past)."""


class RateLimitedError(TalkTuahError):
    """This key used up its requests for the window, or its concurrent streams."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class KeyRotationError(TalkTuahError):
    """The admin key cannot be rotated by TalkTuah (it comes from the environment)."""


class SwitchNotSupportedError(TalkTuahError):
    """The engine is run outside TalkTuah (TALKTUAH_ENGINE=external): it cannot switch."""
