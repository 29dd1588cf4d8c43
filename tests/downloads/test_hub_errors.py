"""One translation of huggingface_hub's exceptions (issue 20): planning and transfer word a
gated repo, a missing repo or revision, a vanished file and a failing Hub the same way, with
the HubError family's `code` and the repo and revision as data."""

from __future__ import annotations

import httpx2
import pytest
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from talktuah.downloads.hub_errors import hub_error
from talktuah.errors import HubError


def http(kind: type[HfHubHTTPError], status: int) -> HfHubHTTPError:
    response = httpx2.Response(status, request=httpx2.Request("GET", "http://hub/x"))
    return kind("the Hub said no", response=response)


@pytest.mark.parametrize(
    ("exc", "path", "code", "words"),
    [
        (http(GatedRepoError, 401), None, "hub_access_denied", "Accept its licence"),
        (http(GatedRepoError, 403), "w.bin", "hub_access_denied", "Accept its licence"),
        (http(RepositoryNotFoundError, 404), None, "hub_not_found", "was not found on the Hub"),
        (http(RevisionNotFoundError, 404), None, "hub_not_found", "Revision 'v9'"),
        (http(HfHubHTTPError, 404), None, "hub_not_found", "has no file list"),
        (
            http(RemoteEntryNotFoundError, 404),
            "w.bin",
            "hub_not_found",
            "Request the download again",
        ),
        (http(RevisionNotFoundError, 404), "w.bin", "hub_not_found", "no longer on the Hub"),
        (http(HfHubHTTPError, 503), None, "hub_unavailable", "Retry later"),
        (ConnectionRefusedError("refused"), None, "hub_unavailable", "Cannot reach the Hub"),
    ],
)
def test_planning_and_transfer_share_one_wording(
    exc: BaseException, path: str | None, code: str, words: str
) -> None:
    translated = hub_error(exc, repo_id="org/a", revision="v9", endpoint=None, path=path)
    assert isinstance(translated, HubError)
    assert translated.code == code and words in str(translated)
    assert translated.data() == {"repo_id": "org/a", "revision": "v9"}


def test_a_gated_repo_reads_the_same_in_planning_and_transfer() -> None:
    gated = http(GatedRepoError, 403)
    planning = hub_error(gated, repo_id="org/a", revision="main")
    transfer = hub_error(gated, repo_id="org/a", revision="main", path="w.bin")
    assert str(planning) == str(transfer)


def test_anything_else_is_left_to_the_caller() -> None:
    assert hub_error(ValueError("ours"), repo_id="org/a", revision="main") is None
    unreachable = LocalEntryNotFoundError("cannot reach the Hub, nothing cached")
    assert hub_error(unreachable, repo_id="org/a", revision="main", path="w.bin") is None
