"""Model ids as users write them, checked once at the boundary before any becomes a path.

`ModelId` is a str that passed the check: the route that reads a `model_id` parameter (or the
Hub URL it came as, model_ref.py) makes one, and the services it calls take it as it is. A
service that takes a model id converts what it gets with `ModelId(...)`, which is the check
for a plain str and nothing for a ModelId, so an id is checked once, and an unchecked one
cannot reach a path whichever door it came in by.

Its own small module (store.py re-exports it) so that whatever needs only the check, the API
layer and model_ref.py, does not import the model store.
"""

from __future__ import annotations

import os

from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id

from .errors import InvalidModelIdError
from .quants import split_tag, with_tag

MAX_MODEL_ID_LENGTH = 96  # the Hub's own limit, also enforced by validate_repo_id


def validate_model_id(model_id: str) -> str:
    """Return `model_id` if it is safe to map into the cache, else raise InvalidModelIdError.

    The library's validator already rejects `..`, `--`, more than one `/` and characters
    outside `[A-Za-z0-9._-]`; our own rules run first so the message names the actual
    problem (a path, a backslash) rather than a regex.
    """
    hint = "Use a Hugging Face repo id such as 'Qwen/Qwen2.5-0.5B-Instruct'."
    if not model_id or not model_id.strip():
        raise InvalidModelIdError(f"model_id is empty. {hint}")
    if len(model_id) > MAX_MODEL_ID_LENGTH:
        raise InvalidModelIdError(
            f"model_id is {len(model_id)} characters long; a repo id has at most "
            f"{MAX_MODEL_ID_LENGTH}. {hint}"
        )
    if "\\" in model_id:
        raise InvalidModelIdError(f"model_id {model_id!r} contains a backslash. {hint}")
    if model_id.startswith(("/", "~")) or os.path.isabs(model_id):
        raise InvalidModelIdError(
            f"model_id {model_id!r} looks like a filesystem path, not a repo id. {hint}"
        )
    if ".." in model_id.split("/") or ".." in model_id:
        raise InvalidModelIdError(f"model_id {model_id!r} contains '..'. {hint}")
    try:
        validate_repo_id(model_id)
    except HFValidationError as exc:
        raise InvalidModelIdError(f"Invalid model_id {model_id!r}: {exc} {hint}") from exc
    return model_id


class ModelId(str):
    """A model as users name it, `org/repo` or `org/repo:QUANT`, checked and canonical.

    Made by checking: `ModelId(text)` raises InvalidModelIdError for an id we refuse. The
    repo part is what becomes a path (validate_model_id); the tag only picks files of a GGUF
    repo (quants.split_tag's grammar) and comes back upper-cased, so `:q8_0` and `:Q8_0` are
    one model everywhere: jobs, listings, the active model. `ModelId(model_id)` of a ModelId
    is that same object, unchecked again. Otherwise a plain str: it compares, hashes, formats
    and serializes as its text.
    """

    __slots__ = ()

    def __new__(cls, model_id: str) -> ModelId:
        if isinstance(model_id, ModelId):
            return model_id
        repo_id, tag = split_tag(model_id)
        return super().__new__(cls, with_tag(validate_model_id(repo_id), tag))


def validate_model_ref(model_id: str) -> str:
    """`model_id` checked and canonical: `ModelId(model_id)`, which is what it returns (typed
    str for its older callers, which rebind the name to plain strs). New code says ModelId."""
    return ModelId(model_id)
