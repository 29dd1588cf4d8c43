"""What people paste as a model: `org/name`, or a Hub page URL they copied from the browser.

`https://huggingface.co/org/name` (and `/tree/<rev>`, `/blob/<rev>/<file>`,
`/resolve/<rev>/<file>`, with or without `www.`, a trailing slash, or the `hf.co` short
host) means the repo `org/name` at that revision. Anything URL-shaped we cannot read that
way is refused with "did you mean org/name?" rather than guessed at. The result is still
only a candidate: `ModelId` (model_id.py) stays the one validator of model ids, and the
revision goes through the same checks as a `revision` parameter. `resolve_model_id` and
`resolve_model_and_revision` are the routes' parse step: what they return is a checked
ModelId that the services take as it is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from .errors import InvalidModelIdError, InvalidRevisionError
from .model_id import ModelId, validate_model_id

HUB_HOSTS = frozenset({"huggingface.co", "www.huggingface.co", "hf.co", "www.hf.co"})
#: Hub page kinds whose next segment is a revision (then, for files, a path).
_REVISION_PAGES = frozenset({"tree", "blob", "resolve", "raw", "commit"})
_OTHER_REPO_KINDS = {"datasets": "dataset", "spaces": "Space"}
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
_HINT = "Use a Hugging Face repo id such as 'Qwen/Qwen2.5-0.5B-Instruct'."


@dataclass(frozen=True)
class ModelRef:
    """A model named by the user: the repo id, and what the URL said beyond it."""

    model_id: str
    revision: str | None = None
    filename: str | None = None


def parse_model_ref(text: str) -> ModelRef:
    """Read a repo id or a Hub URL; raise InvalidModelIdError with a suggestion otherwise.

    A plain id comes back unchanged (not yet validated: `resolve_model_id` checks it).
    """
    value = text.strip()
    if not _looks_like_url(value):
        parts = [p for p in value.split("/") if p]
        if len(parts) > 2 and parts[2] in _REVISION_PAGES:  # a URL path without its host
            raise InvalidModelIdError(
                f"{text!r} is not a repo id. Did you mean {parts[0]}/{parts[1]}?"
            )
        return ModelRef(text)
    url = urlsplit(value if _SCHEME.match(value) else f"https://{value}")
    host = (url.hostname or "").lower()
    segments = [unquote(s) for s in url.path.split("/") if s]
    if host not in HUB_HOSTS:
        guess = _guess(segments)
        suggestion = f" Did you mean {guess}?" if guess else ""
        raise InvalidModelIdError(
            f"{text!r} is a URL on {host or 'no host'}, not a Hugging Face repo id.{suggestion} "
            f"{_HINT}"
        )
    if segments and segments[0] in _OTHER_REPO_KINDS:
        kind = _OTHER_REPO_KINDS[segments[0]]
        raise InvalidModelIdError(
            f"{text!r} is a Hugging Face {kind}, not a model; TalkTuah downloads models "
            f"(https://huggingface.co/ORG/NAME). {_HINT}"
        )
    if not segments or segments[0] in ("models", "api"):
        raise InvalidModelIdError(f"{text!r} does not name a model repo. {_HINT}")
    # Legacy repos have no org (huggingface.co/gpt2/tree/main): the page kind comes second.
    width = 1 if len(segments) > 1 and segments[1] in _REVISION_PAGES else 2
    model_id, rest = "/".join(segments[:width]), segments[width:]
    if not rest:
        return ModelRef(model_id)
    if rest[0] not in _REVISION_PAGES:
        raise InvalidModelIdError(
            f"{text!r} is a Hub page TalkTuah does not read. Did you mean {model_id}?"
        )
    revision = rest[1] if len(rest) > 1 else None
    filename = "/".join(rest[2:]) if rest[0] != "tree" and len(rest) > 2 else None
    return ModelRef(model_id, revision, filename)


def resolve_model_id(text: str) -> ModelId:
    """The validated model id that `text` (an id or a Hub URL) names: `org/name`, or
    `org/name:QUANT` for one quant of a GGUF repo (Ollama's `hf.co/org/name:QUANT` too)."""
    return ModelId(parse_model_ref(text).model_id)


def resolve_model_and_revision(text: str, revision: str) -> tuple[ModelId, str]:
    """The model id (`:QUANT` kept) and revision to download; a URL's revision replaces the
    default "main".

    A URL naming one revision and a `revision` parameter naming another is a mistake we
    refuse rather than silently picking one.
    """
    ref = parse_model_ref(text)
    model_id = ModelId(ref.model_id)
    if ref.revision is None or ref.revision == revision:
        return model_id, revision
    if revision != "main":
        raise InvalidRevisionError(
            f"The URL names revision {ref.revision!r} but revision is {revision!r}. "
            "Give one of them."
        )
    return model_id, ref.revision


def _looks_like_url(value: str) -> bool:
    """A scheme, or a Hub host pasted without one; `org.x/name` stays an id for the validator."""
    return bool(_SCHEME.match(value)) or value.split("/", 1)[0].lower() in HUB_HOSTS


def _guess(segments: list[str]) -> str | None:
    """The `org/name` a URL on another host probably means, e.g. a mirror's page."""
    parts = [s for s in segments if s not in ("models", "api")]
    if len(parts) < 2:
        return None
    candidate = f"{parts[0]}/{parts[1]}"
    try:
        return validate_model_id(candidate)
    except InvalidModelIdError:
        return None
