"""Every error TalkTuah raises on purpose, each with a message that ends with the fix.

```
TalkTuahError
├── InvalidModelIdError        a repo id we refuse to touch            -> 422
├── ModelNotFoundError         not in the models dir                   -> 404
├── ModelInUseError            the active model, delete without force  -> 400
├── ModelBusyError             a download of it is running             -> 409
├── StoragePermissionError     the models dir cannot be written        -> 403
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
