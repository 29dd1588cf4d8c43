"""Resume inside a file through the real `talktuah serve` process (issue 19).

Why: the promise "a download killed at 90 % costs 10 %" only holds if it holds across a real
kill -9 of the real server, with the hub's log as the witness: the next request for the file
must ask for `Range: bytes=N-` from where the dead process had got to. And when the hub's
content changed while TalkTuah was down, the new file must never be a splice of old bytes
and new ones.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from ..support.hub import Hub
from .test_downloads_e2e import Serve, api, job, repo_dir, request_download, wait_for, wait_job
from .test_downloads_e2e import serve as serve  # noqa: F401 - the fixture: the real server

pytestmark = pytest.mark.timeout(90)

SIZE = 4 * 1024 * 1024
FILE = "model.safetensors"


def partials(home: Path, model_id: str) -> list[Path]:
    blobs = repo_dir(home, model_id) / "blobs"
    return sorted(blobs.glob("*.talktuah-partial")) if blobs.is_dir() else []


def leftovers(home: Path, model_id: str) -> list[Path]:
    blobs = repo_dir(home, model_id) / "blobs"
    return [p for p in blobs.iterdir() if p.name.endswith(("-partial", ".json", "-lock"))]


def kill_at_half(start: Serve, hub: Hub, home: Path, model_id: str) -> tuple[str, int]:
    """Start a pull of one large file on a slow hub, kill -9 the server at about half."""
    hub.faults.throttle_bps = 2 * 1024 * 1024  # ~2 s for the file
    proc = start()
    with api(proc) as client:
        accepted = request_download(client, model_id)
        assert accepted.status_code == 202, accepted.text
        job_id: str = accepted.json()["job_id"]
        wait_for(
            lambda: any(p.stat().st_size >= SIZE // 2 for p in partials(home, model_id)),
            timeout=20, what="half of the file on disk", proc=proc,
        )  # fmt: skip
    proc.kill9()
    (partial,) = partials(home, model_id)
    _ = hub.log  # let the request cut by the kill land in the log before clearing it
    hub.clear_log()
    hub.faults.throttle_bps = None
    return job_id, partial.stat().st_size


def test_kill9_at_half_of_a_large_file_resumes_from_the_byte(
    hub: Hub,
    home: Path,
    serve: Serve,  # noqa: F811
) -> None:
    model_id = "org/one-big-file"
    data = hashlib.sha256(b"seed").digest() * (SIZE // 32)  # no two files alike across tests
    hub.add_repo(model_id, {FILE: data, "config.json": b"{}"})
    job_id, killed_at = kill_at_half(serve, hub, home, model_id)

    proc = serve()
    with api(proc) as client:
        first = job(client, job_id)
        final = wait_job(client, proc, job_id, timeout=30, what="the resumed job")
    assert final["status"] == "complete", final
    assert first["bytes_done"] >= SIZE * 0.4, first  # progress resumed at the offset
    gets = [r for r in hub.requests(method="GET", kind="resolve") if r.path == FILE]
    assert gets and gets[0].range is not None, gets
    start = int(gets[0].range.removeprefix("bytes=").rstrip("-"))
    assert start >= SIZE * 0.4 and start <= killed_at, (start, killed_at)
    assert sum(r.bytes_sent for r in gets) == SIZE - start, "bytes fetched twice"
    blob = repo_dir(home, model_id) / "snapshots" / final["commit_hash"] / FILE
    assert hashlib.sha256(blob.read_bytes()).hexdigest() == hashlib.sha256(data).hexdigest()
    assert leftovers(home, model_id) == []


def test_content_changed_while_down_is_refetched_from_zero_never_spliced(
    hub: Hub,
    home: Path,
    serve: Serve,  # noqa: F811
) -> None:
    """The repo was force-pushed while TalkTuah was down (new content, same file name, the
    old commit gone): the resumed job fails clearly, the next request fetches the new file
    from its first byte and ends with the new content."""
    model_id = "org/rewritten"
    old = hashlib.sha256(b"old").digest() * (SIZE // 32)
    new = hashlib.sha256(b"new").digest() * (SIZE // 32)
    old_sha = hub.add_repo(model_id, {FILE: old, "config.json": b"{}"})
    job_id, _ = kill_at_half(serve, hub, home, model_id)
    new_sha = hub.add_repo(model_id, {FILE: new, "config.json": b"{}"})
    del hub._repos[model_id].commits[old_sha]  # the force push: the old commit is gone

    proc = serve()
    with api(proc) as client:
        failed = wait_job(client, proc, job_id, timeout=30, what="the pinned job to fail")
        assert failed["status"] == "error", failed
        assert "Request the download again" in failed["error"], failed
        again = request_download(client, model_id)
        assert again.status_code == 202, again.text
        final = wait_job(client, proc, again.json()["job_id"], timeout=30)
    assert final["status"] == "complete" and final["commit_hash"] == new_sha, final
    gets = [r for r in hub.requests(method="GET", kind="resolve") if r.path == FILE]
    assert [r.range for r in gets] == [None], "the new file must start from its first byte"
    blob = repo_dir(home, model_id) / "snapshots" / new_sha / FILE
    assert blob.read_bytes() == new


def test_du_and_gc_from_the_cli(hub: Hub, home: Path, serve: Serve) -> None:  # noqa: F811
    """`talktuah du` shows the model and an orphan partial; `talktuah gc` reclaims exactly
    the orphan's bytes (an ended job's partial past TALKTUAH_PARTIAL_GRACE=0)."""
    from .test_cli import cli

    model_id = "org/du"
    hub.add_repo(model_id, {FILE: b"x" * 100_000, "config.json": b"{}"})
    proc = serve(TALKTUAH_PARTIAL_GRACE="0")
    with api(proc) as client:
        accepted = request_download(client, model_id)
        assert wait_job(client, proc, accepted.json()["job_id"])["status"] == "complete"
    orphan = repo_dir(home, model_id) / "blobs" / f"{'a' * 64}.talktuah-partial"
    orphan.write_bytes(b"y" * 3000)
    shown = cli(proc.url, "du")
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout + shown.stderr  # the table on stdout, the sentences on stderr
    assert model_id in text and "Partial downloads: 2.9 KiB in 1 file" in text, text
    done = cli(proc.url, "gc")
    assert done.returncode == 0, done.stderr
    assert "Reclaimed 2.9 KiB: 1 partial." in done.stdout + done.stderr, done
    assert not orphan.exists()
    assert (repo_dir(home, model_id) / "refs" / "main").exists()
