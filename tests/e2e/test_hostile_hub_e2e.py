"""A hostile Hub or mirror against the real `talktuah serve` process.

Why these tests exist: a probe of the real server against a lying Hub look-alike (the
documented `HF_ENDPOINT` mirror set-up, or a man in the middle on a plain-http mirror) made
huggingface_hub 2.4 write the hub's bytes outside TALKTUAH_HOME (an `ETag` of `../..`), delete
a file outside it (an etag naming an existing file, then the failed integrity check's
clean-up deleted the link's target), and write refs outside the repo (a `revision` or a model
info `sha` that is a path). Each test plants victim files outside the models dir, runs one
attack through the real process, and checks the victims byte for byte, the job's error (it
names the hub's bad data) and that nothing is listed complete.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ..support.constants import API_KEY, FAST_DOWNLOADS
from ..support.hostile_hub import HostileHub, Victims, serve_hostile_hub
from ..support.hub import make_files
from ..support.server import TalkTuahProcess
from .test_downloads_e2e import wait_job

pytestmark = pytest.mark.timeout(90)

MODEL = "org/victim-bait"
# From <home>/models/hub/models--org--victim-bait/blobs/ up to tmp_path, then into outside/.
UP = "../../../../../outside"


@pytest.fixture
def hostile(tmp_path: Path) -> Iterator[HostileHub]:
    yield from serve_hostile_hub(tmp_path / "hostile-hub")


@pytest.fixture
def victims(tmp_path: Path) -> Victims:
    return Victims.plant(tmp_path / "outside")


@pytest.fixture
def server(tmp_path: Path, hostile: HostileHub) -> Iterator[TalkTuahProcess]:
    proc = TalkTuahProcess(
        tmp_path / "home",
        api_key=API_KEY,
        env={
            "HF_ENDPOINT": hostile.url,
            "HF_HOME": str(tmp_path / "server-hf-home"),
            "TALKTUAH_DOWNLOAD_RETRIES": "0",
            **FAST_DOWNLOADS,
        },
    )
    proc.start(timeout=20)
    yield proc
    proc.stop(timeout=5)


def _publish(hub: HostileHub) -> dict[str, bytes]:
    files = make_files(n_files=1, size=32 * 1024, seed=7)
    hub.add_repo(MODEL, files)
    return files


def _pull(proc: TalkTuahProcess, **params: str) -> httpx.Response:
    with proc.client() as client:
        return client.post(
            "/api/download-model", params={"model_id": MODEL, "auto": "true"} | params
        )


def _failed_job(proc: TalkTuahProcess, response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 202, response.text
    with proc.client() as client:
        job = wait_job(client, proc, response.json()["job_id"], timeout=30)
    assert job["status"] == "error", job
    return job


def _assert_nothing_complete(proc: TalkTuahProcess) -> None:
    with proc.client() as client:
        listed = client.get("/api/models/local").json()["models"]
    assert [m["model_id"] for m in listed if m["complete"]] == [], listed


Attack = Callable[[HostileHub, dict[str, bytes]], None]


def _weights(files: dict[str, bytes]) -> str:
    return next(p for p in files if p.endswith(".safetensors"))


@pytest.mark.parametrize(
    "attack",
    [
        pytest.param(lambda h, f: h.lies.etag.update({_weights(f): f"{UP}/written"}), id="write"),
        pytest.param(
            lambda h, f: h.lies.etag.update({"config.json": f"{UP}/victim.txt"}), id="delete"
        ),
        pytest.param(
            lambda h, f: (
                h.lies.etag.update({_weights(f): f"{UP}/written"}),
                setattr(h.lies, "lie_to_library_only", True),
            ),
            id="write-to-library-only",
        ),
        pytest.param(
            lambda h, f: setattr(h.lies, "commit_header", f"{UP}/commit"), id="commit-header"
        ),
        pytest.param(lambda h, f: h.lies.etag.update({"config.json": "0" * 40}), id="wrong-etag"),
    ],
)
def test_hostile_file_metadata_is_refused_and_touches_nothing_outside(
    server: TalkTuahProcess, hostile: HostileHub, victims: Victims, attack: Attack
) -> None:
    files = _publish(hostile)
    attack(hostile, files)
    job = _failed_job(server, _pull(server))
    assert f"The hub at {hostile.url}" in job["error"], job["error"]
    assert victims.untouched(), victims.snapshot()
    _assert_nothing_complete(server)


def test_model_info_sha_that_is_a_path_is_refused(
    server: TalkTuahProcess, hostile: HostileHub, victims: Victims
) -> None:
    _publish(hostile)
    hostile.lies.info_sha = f"{UP}/refs-written"
    response = _pull(server)
    assert response.status_code == 502, response.text
    assert f"The hub at {hostile.url}" in response.json()["detail"]
    assert "commit" in response.json()["detail"]
    assert victims.untouched(), victims.snapshot()
    _assert_nothing_complete(server)


@pytest.mark.parametrize(
    "name", [f"{UP}/evil.json", "/etc/evil.json", "ok/../../evil.json", "bad\x1bname.json"]
)
def test_hostile_file_names_are_refused(
    server: TalkTuahProcess, hostile: HostileHub, victims: Victims, name: str
) -> None:
    _publish(hostile)
    hostile.lies.extra_siblings.append(name)
    response = _pull(server)
    assert response.status_code == 502, response.text
    assert f"The hub at {hostile.url}" in response.json()["detail"]
    assert victims.untouched(), victims.snapshot()
    _assert_nothing_complete(server)


@pytest.mark.parametrize(
    "revision", [f"{UP}/ref", "/tmp/talktuah-abs-ref", "..", "main\nX", "a b", "v1.lock"]
)
def test_revision_that_could_leave_the_repo_is_422(
    server: TalkTuahProcess, hostile: HostileHub, victims: Victims, revision: str
) -> None:
    """The hub resolves any revision (as a hostile one would); TalkTuah must not ask."""
    _publish(hostile)
    hostile.lies.any_revision = True
    response = _pull(server, revision=revision)
    assert response.status_code == 422, response.text
    assert "revision" in response.json()["detail"]
    assert victims.untouched(), victims.snapshot()
    assert not Path("/tmp/talktuah-abs-ref").exists()
    assert hostile.requests(kind="model_info") == []


def test_tampered_regular_file_is_an_error_not_complete(
    server: TalkTuahProcess, hostile: HostileHub
) -> None:
    """config.json keeps its size but not its bytes: only the git blob id can tell."""
    _publish(hostile)
    hostile.faults.corrupt(MODEL, "config.json")
    job = _failed_job(server, _pull(server))
    assert "config.json" in job["error"] and "git blob id" in job["error"], job["error"]
    _assert_nothing_complete(server)
