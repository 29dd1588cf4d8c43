"""Every error TalkTuah raises on purpose, each with a message that ends with the fix.

```
TalkTuahError
├── InvalidModelIdError        a repo id we refuse to touch            -> 422
├── ModelNotFoundError         not in the models dir                   -> 404
│   └── HubNotFoundError       no such repo / revision on the Hub      -> 404
├── JobNotFoundError           no download job with that id            -> 404
├── ModelInUseError            the active model, delete without force  -> 400
├── ModelBusyError             a download of it is running             -> 409
├── StoragePermissionError     the models dir cannot be written        -> 403
├── HubAccessError             gated or private, token missing/denied  -> 403
├── HubUnavailableError        the Hub failed after retries            -> 502
├── InsufficientStorageError   the model does not fit on the disk      -> 507
├── DownloadError              a transfer failed for good (job error)
│   └── IntegrityError         a file's sha256 differs from the Hub's
└── InsecureConfigError        refusing to serve with a weak key       (CLI only)
```

The HTTP mapping lives in one place, `api/errors.py`; routers never build error responses.
"""

from __future__ import annotations


class TalkTuahError(Exception):
    """Base class: catch this to handle anything TalkTuah raises deliberately."""


class InvalidModelIdError(TalkTuahError, ValueError):
    """The model id is not a Hugging Face repo id we are willing to map to a path."""


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


class HubNotFoundError(ModelNotFoundError):
    """The Hub has no such repo, revision or file (or hides a private one from us)."""


class JobNotFoundError(TalkTuahError, LookupError):
    """No download job has this id."""


class HubAccessError(TalkTuahError):
    """The repo is gated or private and our token does not open it."""


class HubUnavailableError(TalkTuahError):
    """The Hub kept failing (5xx, resets, timeouts) after every retry."""


class InsufficientStorageError(TalkTuahError, OSError):
    """Not enough free space in the models dir for what a download still needs."""


class DownloadError(TalkTuahError):
    """A download failed for a reason retrying will not fix."""


class IntegrityError(DownloadError):
    """Downloaded bytes do not match the sha256 the Hub published for them."""
