"""Jobs survive a stop of TalkTuah: re-queued at start, finished files are not fetched again."""

from __future__ import annotations

from collections.abc import Callable

from talktuah.config import Settings
from talktuah.downloads.jobs import DownloadJob, JobStatus
from talktuah.downloads.manager import DownloadRequest
from talktuah.security import ApiKey
from talktuah.services import Services

from ..support.constants import API_KEY
from ..support.eventually import eventually
from ..support.hub import Hub, make_files


def wait(services: Services, job_id: str, done: Callable[[DownloadJob], bool]) -> DownloadJob:
    return eventually(
        lambda: services.downloads.get(job_id), done, timeout=30, interval=0.02,
        what=f"job {job_id} reaching the state",
    )  # fmt: skip


def test_a_stopped_download_resumes_on_the_next_start(settings: Settings, hub: Hub) -> None:
    files = make_files(n_files=4, size=120_000, seed=21)
    hub.add_repo("org/resume", files)
    hub.faults.throttle_bps = 400_000
    first = Services.build(settings, ApiKey(API_KEY, "env"))
    first.start()
    outcome = first.downloads.request(DownloadRequest("org/resume"))
    assert outcome.job is not None
    job_id = outcome.job.id
    # files_done counts the small JSON/README files too: wait for two shards on disk
    wait(first, job_id, lambda j: j.files_done >= 5)
    first.close()  # a graceful stop interrupts the transfer and keeps the job
    stopped = Services.build(settings, ApiKey(API_KEY, "env"))
    job = stopped.downloads.get(job_id)
    assert job.status == JobStatus.QUEUED and job.files_done >= 5
    done_before = set(hub.fetched_files("org/resume")) - {
        f"model-0000{i}-of-00004.safetensors" for i in (3, 4)
    }
    blobs = next(settings.models_dir.glob("models--org--resume/blobs"))
    orphan = blobs / "deadbeef.1234abcd.incomplete"
    orphan.write_bytes(b"left by a killed process")

    hub.clear_log()
    hub.faults.throttle_bps = None
    stopped.start()
    try:
        final = wait(stopped, job_id, lambda j: not j.status.live)
        assert final.status == JobStatus.COMPLETE, final.error
        assert final.attempts == 2
        refetched = set(hub.fetched_files("org/resume"))
        assert refetched and not refetched & done_before, (refetched, done_before)
        assert not orphan.exists()
        (model,) = stopped.store.list()
        assert model.complete
        snapshot = settings.models_dir / "models--org--resume" / "snapshots" / final.commit_hash
        assert {p: (snapshot / p).read_bytes() for p in files} == files  # type: ignore[operator]
    finally:
        stopped.close()
