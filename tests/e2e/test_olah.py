"""Compatibility check against a third-party Hub implementation: olah, in offline mode.

Why: our own test hub (``tests.support.hub``) is written from measurements of the client, so
it could share our blind spots. olah is an independent server that ``huggingface_hub`` must
also work with; if the client pulls a repo through it into a cache that ``scan_cache_dir``
understands, our cache-layout assumptions hold for hubs we did not write.

olah's offline mode serves plain git repos found at ``<mirrors-path>/models/<org>/<name>``
(the path list is only settable in its TOML config). It cannot do Range, gated repos or sizes
in model info, which is why it is not the main fixture.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from huggingface_hub import scan_cache_dir, snapshot_download

from tests.support.hub import make_files

from ..support.eventually import eventually

REPO_ID = "org/olah-model"
READY_TIMEOUT_S = 30.0
GIT_ENV = {
    "GIT_AUTHOR_NAME": "TalkTuah Tests",
    "GIT_AUTHOR_EMAIL": "tests@talktuah.invalid",
    "GIT_COMMITTER_NAME": "TalkTuah Tests",
    "GIT_COMMITTER_EMAIL": "tests@talktuah.invalid",
    "GIT_AUTHOR_DATE": "2024-01-01T00:00:00+00:00",
    "GIT_COMMITTER_DATE": "2024-01-01T00:00:00+00:00",
}


@dataclass(frozen=True)
class OlahServer:
    url: str
    commit: str
    files: dict[str, bytes]
    log_path: Path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _git(repo: Path, *args: str) -> str:
    env = {**os.environ, **GIT_ENV, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    done = subprocess.run(
        ["git", *args], cwd=repo, env=env, check=True, capture_output=True, text=True, timeout=30
    )
    return done.stdout.strip()


def _make_git_repo(path: Path, files: dict[str, bytes]) -> str:
    """A git repo with one commit holding ``files`` (plain blobs; olah reads them via git)."""
    path.mkdir(parents=True)
    _git(path, "init", "-q", "-b", "main")
    for name, data in files.items():
        target = path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    _git(path, "add", "-A")
    _git(path, "commit", "-q", "-m", "Add model files")
    return _git(path, "rev-parse", "HEAD")


def _log_tail(path: Path, n: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return "<no olah log>"


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL: uvicorn's graceful shutdown can take a few seconds."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


@pytest.fixture
def olah_server(tmp_path: Path) -> Iterator[OlahServer]:
    assert shutil.which("git"), "olah's offline mode serves git repos: the git CLI is required"
    files = make_files(n_files=2, size=96 * 1024, seed=11)
    files["nested/extra.txt"] = b"a file in a sub-directory\n"
    mirrors = tmp_path / "olah-mirrors"
    org, name = REPO_ID.split("/")
    commit = _make_git_repo(mirrors / "models" / org / name, files)

    port = _free_port()
    workdir = tmp_path / "olah"
    workdir.mkdir()
    config = workdir / "config.toml"
    config.write_text(
        "[basic]\n"
        'host = "127.0.0.1"\n'
        f"port = {port}\n"
        f'repos-path = "{workdir / "repos"}"\n'
        f'mirrors-path = ["{mirrors}"]\n'
        f'mirror-netloc = "127.0.0.1:{port}"\n'
        f'mirror-lfs-netloc = "127.0.0.1:{port}"\n'
        "\n[accessibility]\n"
        "offline = true\n"
    )
    log_path = workdir / "olah.out"
    cmd = [
        sys.executable,
        "-c",
        "import sys; from olah.server import cli; sys.exit(cli())",
        "--config",
        str(config),
        "--log-path",
        str(workdir / "logs"),
    ]
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        # Readiness: "/" is not a route in olah; the repo's revision endpoint is.
        ready = f"{url}/api/models/{REPO_ID}/revision/main"

        def revision() -> int:
            if proc.poll() is not None:
                pytest.fail(f"olah exited with {proc.returncode}:\n{_log_tail(log_path)}")
            return httpx.get(ready, timeout=2).status_code

        eventually(
            revision, lambda status: status == 200, timeout=READY_TIMEOUT_S, interval=0.2,
            ignoring=(httpx.TransportError,), what=lambda: f"olah ready\n{_log_tail(log_path)}",
        )  # fmt: skip
        yield OlahServer(url=url, commit=commit, files=files, log_path=log_path)
    finally:
        _stop(proc)


@pytest.mark.timeout(120)
def test_snapshot_download_through_olah_offline(
    olah_server: OlahServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    cache = tmp_path / "models" / "hub"

    path = Path(snapshot_download(REPO_ID, endpoint=olah_server.url, cache_dir=cache))

    log = _log_tail(olah_server.log_path)
    assert path == cache / "models--org--olah-model" / "snapshots" / olah_server.commit, log
    for name, data in olah_server.files.items():
        assert (path / name).read_bytes() == data, f"{name} differs\n{log}"

    info = scan_cache_dir(cache)
    assert not info.warnings
    (repo,) = info.repos
    assert repo.repo_id == REPO_ID
    assert repo.nb_files == len(olah_server.files)
    assert repo.size_on_disk == sum(len(d) for d in olah_server.files.values())
    assert [r.commit_hash for r in repo.revisions] == [olah_server.commit]


@pytest.mark.timeout(120)
def test_talktuah_downloads_through_olah(olah_server: OlahServer, tmp_path: Path) -> None:
    """The same pull through TalkTuah's download manager: plan, transfer, verify, list."""
    from talktuah.config import Settings
    from talktuah.downloads.manager import DownloadRequest
    from talktuah.security import ApiKey
    from talktuah.services import Services

    settings = Settings(
        home=tmp_path / "home", hf_endpoint=olah_server.url, download_disk_margin_bytes=0
    )
    services = Services.build(settings, ApiKey("k" * 32, "env"))
    services.start()
    try:
        outcome = services.downloads.request(DownloadRequest(REPO_ID))
        assert outcome.job is not None
        job_id = outcome.job.id
        job = eventually(
            lambda: services.downloads.get(job_id), lambda job: not job.status.live, timeout=60,
            what=lambda: f"the download ending\n{_log_tail(olah_server.log_path)}",
        )  # fmt: skip
        log = _log_tail(olah_server.log_path)
        assert job.status == "complete", f"{job.error}\n{log}"
        assert job.bytes_done == job.bytes_total == sum(len(d) for d in olah_server.files.values())
        (model,) = services.store.list()
        assert model.model_id == REPO_ID and model.complete
        snapshot = Path(model.path) / "snapshots" / olah_server.commit
        for name, data in olah_server.files.items():
            assert (snapshot / name).read_bytes() == data, name
    finally:
        services.close()
