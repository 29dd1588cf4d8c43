"""What the Hub (or a mirror, or whoever sits on a plain-http link) sends, checked before it
becomes a path.

huggingface_hub 2.4 builds cache paths from server data without checking their grammar:
`blobs/<ETag>`, `snapshots/<X-Repo-Commit>/...`, `.no_exist/<X-Repo-Commit>/...` and
`refs/<revision>`. A hostile mirror answering `ETag: "../../../x"` made it write (and, after a
failed integrity check, delete) files outside the models dir. Every such value is checked
here against its exact grammar — sha256 for LFS etags, git sha1 for other etags and commits,
git's ref-name rules for revisions, the library's own rule plus ours for file names — before
the library sees it (the pattern of huggingface_hub's `_validate_relative_filename`, which it
applies to file names only).

The library makes its own HEAD request inside `hf_hub_download` after ours, so a hub could
answer our probe honestly and the library's with a lie. `guard_library_metadata()` therefore
wraps the library's `file_download.get_hf_file_metadata` (looked up as a module global by
`_get_metadata_or_catch_error`; held by tests/downloads/test_hub_data.py and the
`huggingface-hub` pin in pyproject) so every HEAD the library makes in this process is checked,
and checked against what planning expects for the file being fetched (`expect()`).
"""

from __future__ import annotations

import contextvars
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import wraps
from typing import Any

import huggingface_hub.file_download as hf_file_download
from huggingface_hub import HfFileMetadata
from huggingface_hub.errors import HfHubHTTPError

from ..errors import HubDataError, InvalidRevisionError

_SHA1 = re.compile(r"[0-9a-f]{40}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# git check-ref-format: no space, ~ ^ : ? * [ \ and no control characters.
_REF_FORBIDDEN = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")
MAX_REVISION_LENGTH = 255
MAX_FILENAME_LENGTH = 1024
_COMMIT_HEADER = "X-Repo-Commit"


def _show(value: object) -> str:
    """A hub value as it can be quoted in a message: repr, cut short."""
    text = repr(value)
    return text if len(text) <= 100 else text[:97] + "..."


def is_commit_hash(value: str) -> bool:
    return _SHA1.fullmatch(value) is not None


def validate_revision(revision: str) -> str:
    """A revision a user may ask for: a commit sha or a git ref name (git's own rules).

    It becomes `refs/<revision>` in the cache, so anything that could leave that folder
    (`..`, an absolute path, a backslash) or fool a log (control characters) is refused.
    """
    hint = "Use a branch, tag or commit sha such as 'main', 'v1.0' or a 40-character sha."
    if not revision:
        raise InvalidRevisionError(f"revision is empty. {hint}")
    if len(revision) > MAX_REVISION_LENGTH:
        raise InvalidRevisionError(
            f"revision is {len(revision)} characters long (at most {MAX_REVISION_LENGTH}). {hint}"
        )
    if is_commit_hash(revision):
        return revision
    problem = None
    if _REF_FORBIDDEN.search(revision):
        problem = "contains a space, a control character or one of ~ ^ : ? * [ \\"
    elif revision.startswith("/") or revision.endswith("/") or "//" in revision:
        problem = "starts or ends with '/' or contains '//'"
    elif ".." in revision:
        problem = "contains '..'"
    elif "@{" in revision or revision == "@":
        problem = "contains '@{' or is '@'"
    elif revision.startswith("-"):
        problem = "starts with '-'"
    elif revision.endswith((".", ".lock")):
        problem = "ends with '.' or '.lock'"
    elif any(part.startswith(".") for part in revision.split("/")):
        problem = "has a part starting with '.'"
    if problem is not None:
        raise InvalidRevisionError(
            f"revision {_show(revision)} is not a valid git ref: {problem}. {hint}"
        )
    return revision


def hub_label(endpoint: str | None) -> str:
    return endpoint or "https://huggingface.co"


def check_commit(value: object, *, endpoint: str | None, what: str) -> str:
    """A commit sha from the hub: exactly 40 lowercase hex digits."""
    if not isinstance(value, str) or not is_commit_hash(value):
        raise HubDataError(
            f"The hub at {hub_label(endpoint)} sent {_show(value)} as the commit of {what}; a "
            "commit is 40 hex digits. Refusing to use it (it would become a path). Check "
            "HF_ENDPOINT: the mirror or a proxy in between is broken or hostile."
        )
    return value


def check_sha256(value: object, *, endpoint: str | None, what: str) -> str:
    if not isinstance(value, str) or _SHA256.fullmatch(value) is None:
        raise HubDataError(
            f"The hub at {hub_label(endpoint)} sent {_show(value)} as the sha256 of {what}; a "
            "sha256 is 64 hex digits. Check HF_ENDPOINT: the mirror or a proxy in between is "
            "broken or hostile."
        )
    return value


def check_blob_id(value: object, *, endpoint: str | None, what: str) -> str | None:
    """A git blob id (sha1) when the hub gives one; None when it gives none (olah)."""
    if value is None:
        return None
    if not isinstance(value, str) or not is_commit_hash(value):
        raise HubDataError(
            f"The hub at {hub_label(endpoint)} sent {_show(value)} as the git blob id of "
            f"{what}; a blob id is 40 hex digits. Check HF_ENDPOINT: the mirror or a proxy "
            "in between is broken or hostile."
        )
    return value


def check_filename(value: object, *, endpoint: str | None, model_id: str) -> str:
    """A file name from a repo listing: relative, `/`-separated, no `..`, nothing odd."""
    problem = None
    if not isinstance(value, str) or not value:
        problem = "is empty or not text"
    elif len(value) > MAX_FILENAME_LENGTH:
        problem = f"is longer than {MAX_FILENAME_LENGTH} characters"
    elif _CONTROL.search(value):
        problem = "contains control characters"
    elif "\\" in value:
        problem = "contains a backslash"
    elif value.startswith("/") or re.match(r"[A-Za-z]:", value):
        problem = "is an absolute path"
    elif any(part in ("", ".", "..") for part in value.split("/")):
        problem = "has an empty, '.' or '..' part"
    if problem is not None:
        raise HubDataError(
            f"The hub at {hub_label(endpoint)} lists a file of {model_id} named "
            f"{_show(value)}, which {problem}. Refusing to download it (it would become a "
            "path outside the model's folder). Check HF_ENDPOINT: the mirror or a proxy in "
            "between is broken or hostile."
        )
    assert isinstance(value, str)
    return value


def check_size(value: object, *, endpoint: str | None, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise HubDataError(
            f"The hub at {hub_label(endpoint)} sent {_show(value)} as the size of {what}. "
            "Check HF_ENDPOINT: the mirror or a proxy in between is broken or hostile."
        )
    return value


@dataclass(frozen=True)
class Expected:
    """What planning learned about the file the library is about to fetch."""

    path: str
    commit: str
    etag: str | None  # the LFS sha256, or the git blob id of a regular file (when known)
    lfs: bool
    endpoint: str | None


_expected: contextvars.ContextVar[Expected | None] = contextvars.ContextVar(
    "talktuah_expected_file", default=None
)


@contextmanager
def expect(expected: Expected) -> Iterator[None]:
    """Check every HEAD the library makes in this thread against `expected`."""
    token = _expected.set(expected)
    try:
        yield
    finally:
        _expected.reset(token)


def check_metadata(
    meta: HfFileMetadata, *, endpoint: str | None, expected: Expected | None
) -> HfFileMetadata:
    """The answer to a file HEAD: commit and etag with their exact grammar, and (when the
    caller knows them) equal to what planning saw."""
    what = expected.path if expected is not None else meta.location
    commit = check_commit(meta.commit_hash, endpoint=endpoint, what=what)
    etag = meta.etag
    if not isinstance(etag, str) or not (_SHA1.fullmatch(etag) or _SHA256.fullmatch(etag)):
        raise HubDataError(
            f"The hub at {hub_label(endpoint)} sent ETag {_show(etag)} for {what}; an etag "
            "is a sha256 (LFS) or a git sha1. Refusing to use it (it would become a path). "
            "Check HF_ENDPOINT: the mirror or a proxy in between is broken or hostile."
        )
    if expected is None:
        return meta
    if commit != expected.commit:
        raise HubDataError(
            f"The hub at {hub_label(endpoint)} answered for {expected.path} with commit "
            f"{commit}, but the download is pinned to {expected.commit}. Check HF_ENDPOINT: "
            "the mirror or a proxy in between is inconsistent or hostile."
        )
    if expected.etag is not None and etag != expected.etag:
        kind = "sha256" if expected.lfs else "git blob id"
        raise HubDataError(
            f"The hub at {hub_label(endpoint)} sent ETag {etag} for {expected.path}, but its "
            f"file list gave the {kind} {expected.etag}. Check HF_ENDPOINT: the mirror or a "
            "proxy in between is inconsistent or hostile."
        )
    return meta


def _check_error_commit(exc: HfHubHTTPError, endpoint: str | None) -> None:
    """A 404 carries `X-Repo-Commit` too, and the library writes `.no_exist/<it>/...`."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    commit = headers.get(_COMMIT_HEADER) if headers is not None else None
    if commit is not None:
        expected = _expected.get()
        check_commit(commit, endpoint=endpoint, what=expected.path if expected else "a file")


def _guarded(
    original: Callable[..., HfFileMetadata],
) -> Callable[..., HfFileMetadata]:
    @wraps(original)
    def get_hf_file_metadata(*args: Any, **kwargs: Any) -> HfFileMetadata:
        expected = _expected.get()
        endpoint = expected.endpoint if expected is not None else kwargs.get("endpoint")
        try:
            meta = original(*args, **kwargs)
        except HfHubHTTPError as exc:
            _check_error_commit(exc, endpoint)
            raise
        return check_metadata(meta, endpoint=endpoint, expected=expected)

    get_hf_file_metadata.talktuah_guard = True  # type: ignore[attr-defined]
    return get_hf_file_metadata


def guard_library_metadata() -> None:
    """Make every file HEAD huggingface_hub makes in this process go through our checks.

    Idempotent. The library reads `get_hf_file_metadata` from its module globals at call
    time, so replacing the global is enough; a test fails if a release changes that.
    """
    current = hf_file_download.get_hf_file_metadata
    if getattr(current, "talktuah_guard", False):
        return
    hf_file_download.get_hf_file_metadata = _guarded(current)
