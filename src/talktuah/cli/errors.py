"""The one place where what went wrong becomes the line a CLI user reads, ending with the
command to run next (huggingface_hub's `cli/_errors.py` is the pattern).

The API's messages name API calls (`POST /api/switch-model?...`, `force=true`), which is
right for n8n and curl and wrong in a terminal. The API's wording is not changed for us:
the CLI recognises its errors by the HTTP status and the route it called, and translates
the API calls a message suggests into the commands that do the same.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import unquote

from .client import ServerError, ServerLostError, ServerUnreachableError

#: API calls that messages suggest, and the command that does the same. Order matters:
#: the more specific pattern first.
_API_TO_CLI: list[tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]]] = [
    (re.compile(r"\(?POST /api/switch-model\?model_id=\.\.\.\)?"), "`talktuah use MODEL`"),
    (re.compile(r"POST /api/switch-model\?model_id=([^\s,;)]+)"),
     lambda m: f"`talktuah use {unquote(m[1])}`"),
    (re.compile(r"POST /api/switch-model"), "`talktuah use MODEL`"),
    (re.compile(r"POST /api/download-model\?model_id=([^\s&,;)]+)(?:&auto=true)?"),
     lambda m: f"`talktuah pull {unquote(m[1])}`"),
    (re.compile(r"POST /api/download-model\S*"), "`talktuah pull ORG/NAME`"),
    (re.compile(r"DELETE /api/downloads/([\w-]+)"),
     lambda m: f"`talktuah downloads --cancel {m[1]}`"),
    (re.compile(r"\(?DELETE /api/delete-model\S*?\)?(?=[,.;\s]|$)"), "`talktuah rm MODEL`"),
    (re.compile(r"\(?GET /api/download-progress\S*?\)?(?=[,.;\s]|$)"), "`talktuah downloads`"),
    (re.compile(r"GET /api/downloads\b"), "`talktuah downloads`"),
    (re.compile(r"\(?GET /api/model-loading-status\)?"), "`talktuah ps`"),
    (re.compile(r"\(?GET /api/ps\)?"), "`talktuah ps`"),
    (re.compile(r"POST /api/load-model\?model_id=([^\s&,;)]+)"),
     lambda m: f"`talktuah load {unquote(m[1])}`"),
    (re.compile(r"\(?POST /api/unload-model\?model_id=\.\.\.\)?"), "`talktuah unload MODEL`"),
    (re.compile(r"POST /api/unload-model\S*"), "`talktuah unload MODEL`"),
    (re.compile(r"GET /api/models/local"), "`talktuah ls`"),
    (re.compile(r"\(?POST /api/storage/gc\)?"), "`talktuah gc`"),
    (re.compile(r"\(?GET /api/storage\)?"), "`talktuah du`"),
    (re.compile(r"\(?POST /api/keys\)?"), "`talktuah key create`"),
    (re.compile(r"GET /api/keys"), "`talktuah key ls`"),
    (re.compile(r"(?:repeat the request |pass |with )?force=true"), "add `--force`"),
]  # fmt: skip


def speak_cli(detail: str) -> str:
    """The API's message with the API calls it suggests replaced by CLI commands."""
    for pattern, replacement in _API_TO_CLI:
        detail = pattern.sub(replacement, detail)
    return detail


def _model_of(exc: ServerError) -> str | None:
    found = re.match(r"(\S+) (?:is|was) ", exc.detail)
    return found[1] if found else None


def _server_error(exc: ServerError) -> str:
    """Messages for the errors a CLI user meets most, by status and the route called."""
    route, status = exc.path, exc.status
    if status == 401:
        return (
            "The server refused the API key (unknown, revoked or expired). On the server, "
            "`talktuah key` prints the admin key: set PROXY_API_KEY to it, or to a key from "
            "`talktuah key create`."
        )
    if route == "/api/delete-model":
        model = _model_of(exc) or "MODEL"
        if status == 400:
            return (
                f"{model} is the active model: `talktuah rm {model} --force` deletes it "
                "anyway (the engine stops), or `talktuah use OTHER` first."
            )
        job = re.search(r"\(job ([\w-]+)\)", exc.detail)
        if status == 409 and job:
            return (
                f"{model} is being downloaded (job {job[1]}): "
                f"`talktuah downloads --cancel {job[1]}`, then `talktuah rm {model}`."
            )
    if route.startswith(("/api/switch-model", "/api/delete-model")) and status == 404:
        named = re.search(r"Model not found: (\S+)", exc.detail)
        name = named[1] if named else "it"
        return (
            f"{name} is not downloaded. `talktuah ls` lists downloaded models; "
            f"`talktuah pull {name}` downloads it."
        )
    if route.startswith("/api/downloads/") and status == 404:
        job_id = route.removeprefix("/api/downloads/").split("/")[0]
        return f"No download job {job_id}. `talktuah downloads` lists them."
    if route.startswith("/api/keys/") and status == 404:
        return f"No API key {route.removeprefix('/api/keys/')}. `talktuah key ls` lists them."
    if (
        route == "/api/switch-model"
        and status == 409
        and "not completely downloaded" in (exc.detail)
    ):
        model = _model_of(exc) or "MODEL"
        return (
            f"{model} is not completely downloaded: `talktuah pull {model}` finishes (or "
            f"follows) its download, then `talktuah use {model}`."
        )
    return speak_cli(exc.detail) or f"The server answered {status} to {exc.method} {route}."


def message_for(exc: BaseException) -> str | None:
    """The line to print for an expected failure, or None for a bug (let it show)."""
    if isinstance(exc, ServerUnreachableError):
        return (
            f"Cannot reach TalkTuah at {exc.url} ({exc.reason}). Start it with "
            "`talktuah serve`, or set TALKTUAH_URL to where it runs."
        )
    if isinstance(exc, ServerLostError):
        return (
            f"Lost the connection to TalkTuah at {exc.url} ({exc.reason}): the server stopped "
            "or restarted. Start it again with `talktuah serve`, then repeat the command."
        )
    if isinstance(exc, ServerError):
        return _server_error(exc)
    return None
