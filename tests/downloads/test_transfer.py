"""The resumable transfer (downloads/transfer.py) against the test hub: resume from the byte.

Why these exist (issue 19): huggingface_hub 2.4 restarts the file in flight from zero after any
failure or restart, so a 15 GB shard killed at 90 % cost 13.5 GB again. These tests pin what
replaced it: a dropped connection continues from the exact byte in the same run, a partial
left by an earlier run is continued with Range + If-Range, a server that ignores Range or whose
content changed restarts the file from zero, a resumed prefix that does not verify is never
kept (no splice), one writer per blob, progress that starts at the resumed offset.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from huggingface_hub import hf_hub_url

from talktuah.downloads.jobs import DownloadJob, JobStatus, now_iso
from talktuah.downloads.progress import JobProgress
from talktuah.downloads.transfer import (
    Checkpoints,
    PartialRecord,
    Target,
    Transfer,
    WriterLock,
    boot_id,
    partial_paths,
)
from talktuah.errors import IntegrityError

from ..support.eventually import eventually
from ..support.hub import Hub

REPO = "org/big"
FILE = "model.safetensors"
SIZE = 1_000_000


class Recorder:
    """A JobProgress for one file whose every published bytes_done is kept."""

    def __init__(self, size: int) -> None:
        self.job = DownloadJob(
            id="job", model_id=REPO, revision="main", status=JobStatus.DOWNLOADING,
            created_at=now_iso(), updated_at=now_iso(), bytes_total=size,
        )  # fmt: skip
        self.seen: list[int] = []
        self.cancel = threading.Event()
        self.progress = JobProgress(
            self.job, lambda j: self.seen.append(j.bytes_done), interval=0,
            cancel=self.cancel, shutdown=threading.Event(),
        )  # fmt: skip
        self.progress.start(0)


@pytest.fixture
def content(hub: Hub) -> bytes:
    data = os.urandom(SIZE)
    hub.add_repo(REPO, {FILE: data, "config.json": b"{}"})
    return data


def target(hub: Hub) -> Target:
    info = hub.file_info(REPO, FILE)
    sha = hub._repos[REPO].refs["main"]
    url = hf_hub_url(REPO, FILE, revision=sha, endpoint=hub.url)
    return Target(REPO, sha, FILE, info.etag, info.size, url, lfs=True)


def transfer(hub: Hub, models: Path, recorder: Recorder) -> Transfer:
    return Transfer(
        target(hub), models, token=None, endpoint=hub.url, progress=recorder.progress,
        checkpoints=Checkpoints(every_bytes=64 * 1024, every_seconds=0.1),
    )  # fmt: skip


def leave_partial(hub: Hub, models: Path, data: bytes, *, validator: str | None) -> Path:
    """What an earlier run killed mid-file leaves: the bytes so far and their record."""
    t = target(hub)
    blobs = models / "models--org--big" / "blobs"
    blobs.mkdir(parents=True, exist_ok=True)
    partial, meta, _lock = partial_paths(blobs, t.etag)
    partial.write_bytes(data)
    PartialRecord(REPO, t.commit, FILE, t.etag, t.size, len(data), boot_id(), validator).write(meta)
    return partial


def assert_clean(models: Path) -> None:
    leftovers = [p for p in models.rglob("*") if p.name.endswith(("-partial", ".json", "-lock"))]
    assert leftovers == [], leftovers


def file_gets(hub: Hub) -> list[tuple[int, str | None, int]]:
    return [(r.status, r.range, r.bytes_sent) for r in hub.requests(method="GET") if r.path == FILE]


def test_a_dropped_connection_resumes_in_the_same_run_from_the_byte(
    hub: Hub, content: bytes, tmp_path: Path
) -> None:
    hub.faults.drop_after(300_000, path_glob=FILE)
    recorder = Recorder(SIZE)
    pointer = transfer(hub, tmp_path, recorder).run()
    assert pointer.read_bytes() == content
    gets = file_gets(hub)
    assert [(s, r) for s, r, _ in gets] == [(200, None), (206, "bytes=300000-")], gets
    assert sum(sent for _, _, sent in gets) == SIZE, "not one byte fetched twice"
    assert recorder.seen == sorted(recorder.seen)
    assert_clean(tmp_path)


def test_a_partial_from_an_earlier_run_is_continued_with_range_and_if_range(
    hub: Hub, content: bytes, tmp_path: Path
) -> None:
    etag = f'"{hub.file_info(REPO, FILE).etag}"'
    leave_partial(hub, tmp_path, content[:600_000], validator=etag)
    recorder = Recorder(SIZE)
    run = transfer(hub, tmp_path, recorder)
    assert run.run().read_bytes() == content
    assert run.resumed_from == 600_000
    (get,) = hub.requests(method="GET")
    assert (get.status, get.range, get.bytes_sent) == (206, "bytes=600000-", SIZE - 600_000)
    assert get.headers.get("if-range") == etag
    # Progress starts at the resumed offset and never goes back.
    assert recorder.seen[0] == 0 and recorder.seen[1] == 600_000, recorder.seen[:3]
    assert recorder.seen == sorted(recorder.seen) and recorder.seen[-1] == SIZE
    assert_clean(tmp_path)


def test_a_hub_that_ignores_range_restarts_the_file_from_zero(
    hub: Hub, content: bytes, tmp_path: Path
) -> None:
    leave_partial(hub, tmp_path, content[:500_000], validator=None)
    hub.faults.ignore_range = True
    recorder = Recorder(SIZE)
    assert transfer(hub, tmp_path, recorder).run().read_bytes() == content
    assert [(s, r) for s, r, _ in file_gets(hub)] == [(200, "bytes=500000-")]
    assert recorder.seen == sorted(recorder.seen), "progress went backwards on the restart"
    assert_clean(tmp_path)


def test_content_that_changed_under_the_validator_restarts_from_zero(
    hub: Hub, content: bytes, tmp_path: Path
) -> None:
    """The partial was started from a response whose ETag no longer holds: the server sends
    the whole file (If-Range), and the old bytes are dropped, not spliced."""
    leave_partial(hub, tmp_path, b"\0" * 400_000, validator='"an-older-version"')
    assert transfer(hub, tmp_path, Recorder(SIZE)).run().read_bytes() == content
    assert [(s, r) for s, r, _ in file_gets(hub)] == [(200, "bytes=400000-")]


def test_a_resumed_prefix_that_does_not_verify_is_fetched_again_never_spliced(
    hub: Hub, content: bytes, tmp_path: Path
) -> None:
    """Same name, same validator, other bytes (a mirror that changed content in place): the
    resumed file fails its sha256, so it is fetched again from zero and ends correct."""
    etag = f'"{hub.file_info(REPO, FILE).etag}"'
    leave_partial(hub, tmp_path, os.urandom(400_000), validator=etag)
    run = transfer(hub, tmp_path, Recorder(SIZE))
    assert run.run().read_bytes() == content
    assert [(s, r) for s, r, _ in file_gets(hub)] == [(206, "bytes=400000-"), (200, None)]
    assert_clean(tmp_path)


def test_corrupt_bytes_from_zero_fail_clearly_and_leave_no_partial(
    hub: Hub, content: bytes, tmp_path: Path
) -> None:
    hub.faults.corrupt(REPO, FILE)
    with pytest.raises(IntegrityError, match="corrupt.*Request the download again"):
        transfer(hub, tmp_path, Recorder(SIZE)).run()
    assert not (tmp_path / "models--org--big" / "blobs" / target(hub).etag).exists()
    assert_clean(tmp_path)


def test_after_a_reboot_the_partial_is_cut_back_to_its_last_checkpoint(
    hub: Hub, content: bytes, tmp_path: Path
) -> None:
    """Bytes past the last fsync may be garbage after a power loss (another boot id)."""
    partial = leave_partial(hub, tmp_path, content[:300_000], validator=None)
    t = target(hub)
    meta = partial_paths(partial.parent, t.etag)[1]
    PartialRecord(REPO, t.commit, FILE, t.etag, t.size, 200_000, "another-boot", None).write(meta)
    run = transfer(hub, tmp_path, Recorder(SIZE))
    assert run.run().read_bytes() == content
    assert run.resumed_from == 200_000
    assert [r for _, r, _ in file_gets(hub)] == ["bytes=200000-"]


def test_two_writers_of_one_file_make_one_transfer(
    hub: Hub, content: bytes, tmp_path: Path
) -> None:
    hub.faults.throttle_bps = 2_000_000
    results: list[Path] = []
    threads = [
        threading.Thread(
            target=lambda: results.append(transfer(hub, tmp_path, Recorder(SIZE)).run())
        )
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(results) == 2 and all(p.read_bytes() == content for p in results)
    assert sum(sent for _, _, sent in file_gets(hub)) == SIZE, file_gets(hub)
    assert_clean(tmp_path)


_OTHER_PROCESS = """
import sys, threading, time
from pathlib import Path
from talktuah.downloads.jobs import DownloadJob, JobStatus, now_iso
from talktuah.downloads.progress import JobProgress
from talktuah.downloads.transfer import Checkpoints, Target, Transfer
repo, commit, path, etag, size, url, models = sys.argv[1:]
job = DownloadJob("other", repo, "main", JobStatus.DOWNLOADING, now_iso(), now_iso())
job.bytes_total = int(size)
progress = JobProgress(job, lambda j: None, cancel=threading.Event(), shutdown=threading.Event())
progress.start(0)
Transfer(Target(repo, commit, path, etag, int(size), url, True), Path(models), token=None,
         endpoint=None, progress=progress, checkpoints=Checkpoints(65536, 0.1)).run()
"""


@pytest.mark.slow  # a second process writes at 200 kB/s until it is killed -9: ~3 s
def test_a_second_process_waits_for_the_writer_and_takes_over_its_partial_after_kill9(
    hub: Hub, content: bytes, tmp_path: Path
) -> None:
    """Another process sharing the models dir writes the file; ours waits on the lock rather
    than writing beside it, and when that process is killed -9 it continues its partial."""
    t = target(hub)
    hub.faults.throttle_bps = 200_000
    other = subprocess.Popen(
        [sys.executable, "-c", _OTHER_PROCESS, t.repo_id, t.commit, t.path, t.etag,
         str(t.size), t.url, str(tmp_path)],
    )  # fmt: skip
    try:
        partial, _meta, lock = partial_paths(tmp_path / "models--org--big" / "blobs", t.etag)

        def written() -> int:
            assert other.poll() is None, "the writer exited"
            return partial.stat().st_size

        eventually(written, lambda size: size > 300_000, interval=0.02,
                   ignoring=(FileNotFoundError,), what="the writer writing")  # fmt: skip
        assert not WriterLock(lock).try_acquire(), "the other process holds the lock"
        results: list[Path] = []
        ours = threading.Thread(
            target=lambda: results.append(transfer(hub, tmp_path, Recorder(SIZE)).run())
        )
        ours.start()
        time.sleep(0.5)  # a while in which a transfer beside the writer would have ended
        assert not results, "ours must wait for the writer, not write beside it"
        other.kill()
        other.wait(10)
        killed_at = partial.stat().st_size
        hub.faults.throttle_bps = None
        ours.join(30)
    finally:
        if other.poll() is None:
            other.kill()
            other.wait(10)
    assert results and results[0].read_bytes() == content
    # The last GET to start (the killed writer's is recorded when the hub sees it broken,
    # which may be after ours has ended).
    resumed = max(
        (r for r in hub.requests(method="GET") if r.path == FILE), key=lambda r: r.started
    )
    assert resumed.range == f"bytes={killed_at}-", (resumed.range, killed_at)
    assert hashlib.sha256(results[0].read_bytes()).hexdigest() == t.etag
    assert_clean(tmp_path)


def test_a_removed_lock_file_never_admits_two_holders(tmp_path: Path) -> None:
    path = tmp_path / "x.talktuah-lock"
    first, second = WriterLock(path), WriterLock(path)
    assert first.try_acquire() and not second.try_acquire()
    first.release()  # removes the file
    assert not path.exists()
    assert second.try_acquire() and not WriterLock(path).try_acquire()
    second.release()
