"""The one translation of huggingface_hub's exceptions into TalkTuah's HubError family.

Planning (downloads/plan.py, one `model_info` call) and transfer (downloads/worker.py, per
file) both reach the Hub; each used to word the same failure its own way (a gated repo got
two different fixes). Both call `hub_error` now, so a gated repo, a missing revision or a
vanished file reads the same, with the same `code` and data, wherever it is met.
"""

from __future__ import annotations

from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from ..errors import HubAccessError, HubError, HubNotFoundError, HubUnavailableError
from .hub_data import hub_label

#: The Hub's exceptions `hub_error` translates (transfer retries the others first).
HUB_EXCEPTIONS = (HfHubHTTPError, OfflineModeIsEnabled)


def is_network_error(exc: BaseException) -> bool:
    """A transport failure of huggingface_hub's HTTP client (its own httpx fork) or ours."""
    module = type(exc).__module__
    return module.startswith(("httpx", "httpcore")) or isinstance(
        exc, (ConnectionError, TimeoutError)
    )


def http_status(exc: BaseException) -> int | None:
    """The HTTP status of a Hub answer an exception carries, if any."""
    code = getattr(getattr(exc, "response", None), "status_code", None)
    return code if isinstance(code, int) else None


def hub_error(
    exc: BaseException,
    *,
    repo_id: str,
    revision: str,
    endpoint: str | None = None,
    path: str | None = None,
) -> HubError | None:
    """The HubError for `exc`, raised while reading `repo_id`@`revision` (file `path` when
    transferring one), each message ending with its fix; None when `exc` is not a Hub or
    network failure (the caller re-raises it as it is)."""
    data = {"repo_id": repo_id, "revision": revision}
    where = f"{path} of {repo_id}@{revision}" if path else f"{repo_id}@{revision}"
    if isinstance(exc, GatedRepoError):  # a RepositoryNotFoundError too: first
        return HubAccessError(
            f"{repo_id} is gated or private and the token does not open it. Accept its "
            f"licence at https://huggingface.co/{repo_id} with your account, then set "
            "HF_TOKEN to a token of that account and restart TalkTuah.",
            **data,
        )
    missing = (
        isinstance(exc, (RepositoryNotFoundError, EntryNotFoundError))
        and not isinstance(exc, LocalEntryNotFoundError)  # the Hub unreachable, not a 404
    ) or (isinstance(exc, HfHubHTTPError) and http_status(exc) == 404)
    if path is not None and missing:  # planned a moment ago: gone since (a force-push)
        return HubNotFoundError(
            f"{where} is no longer on the Hub ({type(exc).__name__}). "
            "Request the download again to re-plan it.",
            **data,
        )
    if isinstance(exc, RevisionNotFoundError):
        return HubNotFoundError(
            f"Revision {revision!r} of {repo_id} does not exist on the Hub. "
            "Use a branch, tag or commit sha listed on the model page (default: main).",
            **data,
        )
    if isinstance(exc, RepositoryNotFoundError):
        return HubNotFoundError(
            f"{repo_id} was not found on the Hub. Check the spelling (ids are "
            "case-sensitive); if it is private, set HF_TOKEN to a token with access.",
            **data,
        )
    if missing:
        return HubNotFoundError(
            f"{where}: the hub at {hub_label(endpoint)} has no file list for it (404). Check "
            "the repo id and revision; if HF_ENDPOINT is a mirror, check that it carries "
            "this repo.",
            **data,
        )
    if isinstance(exc, HUB_EXCEPTIONS):
        return HubUnavailableError(
            f"The Hub did not answer for {where}: {exc}. Retry later, or set HF_ENDPOINT "
            "to a reachable mirror (and unset HF_HUB_OFFLINE).",
            **data,
        )
    if is_network_error(exc):
        return HubUnavailableError(
            f"Cannot reach the Hub at {hub_label(endpoint)} for {where} "
            f"({type(exc).__name__}: {exc}). Check the network, or set HF_ENDPOINT to a "
            "reachable mirror.",
            **data,
        )
    return None
