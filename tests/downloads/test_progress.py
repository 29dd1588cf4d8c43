"""JobProgress: bytes from the library's hook, throttled persistence, never going backwards."""

from __future__ import annotations

import threading

import pytest

from talktuah.downloads.jobs import DownloadJob, JobStatus
from talktuah.downloads.progress import DownloadCancelled, DownloadInterrupted, JobProgress

from ..support.clock import FakeClock


def make(
    interval: float = 60.0, clock: FakeClock | None = None
) -> tuple[DownloadJob, JobProgress, list[int], threading.Event]:
    job = DownloadJob(
        id="j", model_id="o/m", revision="main", status=JobStatus.DOWNLOADING,
        created_at="", updated_at="", bytes_total=1_000_000,
    )  # fmt: skip
    saved: list[int] = []
    cancel = threading.Event()
    progress = JobProgress(
        job, lambda j: saved.append(j.bytes_done), interval=interval,
        cancel=cancel, shutdown=threading.Event(), clock=clock or FakeClock(),
    )  # fmt: skip
    return job, progress, saved, cancel


def test_writes_are_throttled_not_per_chunk() -> None:
    job, progress, saved, _ = make(interval=60.0)
    progress.start(0)
    bar = progress.bar_class()(total=1_000_000)
    for _ in range(1000):
        bar.update(1000)
    assert job.bytes_done == 1_000_000
    assert len(saved) <= 2, f"{len(saved)} writes for 1000 chunks"
    progress.file_settled(1_000_000)
    assert saved[-1] == 1_000_000, "finishing a file is always written"


def test_a_restarted_file_does_not_move_progress_backwards() -> None:
    job, progress, _, _ = make()
    progress.start(0)
    first = progress.bar_class()(total=500_000)
    first.update(300_000)
    assert job.bytes_done == 300_000
    first.update(-300_000)  # the server ignored Range: the library rewinds its counter
    assert job.bytes_done == 300_000
    retry = progress.bar_class()(total=500_000)  # our retry: a fresh bar from zero
    retry.update(200_000)
    assert job.bytes_done == 300_000
    retry.update(250_000)
    assert job.bytes_done == 450_000


def test_speed_and_eta_come_from_received_bytes() -> None:
    clock = FakeClock()
    job, progress, _, _ = make(clock=clock)
    progress.start(0)
    bar = progress.bar_class()(total=1_000_000)
    bar.update(1)
    clock.advance(0.1)
    bar.update(1)
    assert job.speed_bps is None, "no speed from less than 0.2 s of samples"
    clock.advance(0.15)
    bar.update(99_999)
    assert job.speed_bps == pytest.approx(100_001 / 0.25)  # every byte since start()
    assert job.eta_seconds == pytest.approx((1_000_000 - 100_001) / job.speed_bps)


def test_cancel_raises_from_the_hook() -> None:
    _, progress, _, cancel = make()
    progress.start(0)
    bar = progress.bar_class()(total=10)
    cancel.set()
    with pytest.raises(DownloadCancelled):
        bar.update(1)


def test_shutdown_interrupts() -> None:
    job = DownloadJob(
        id="j", model_id="o/m", revision="main", status=JobStatus.DOWNLOADING,
        created_at="", updated_at="", bytes_total=10,
    )  # fmt: skip
    shutdown = threading.Event()
    progress = JobProgress(job, lambda j: None, cancel=threading.Event(), shutdown=shutdown)
    shutdown.set()
    with pytest.raises(DownloadInterrupted):
        progress.check()
