"""The download manager: jobs in SQLite, a bounded pool of worker threads, resume on start.

Threads, not asyncio tasks: `hf_hub_download` is blocking, and a thread per transfer keeps
the event loop free for the API (the seed ran the whole download inside the request's event
loop as a fire-and-forget task, and lost it on restart).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass

import huggingface_hub.constants as hf_constants

from ..config import Settings
from ..errors import TalkTuahError
from ..host_memory import total_memory
from ..quants import DEFAULT_ORDER, split_tag, with_tag
from ..state import StateDB
from ..storage import GcReport, LiveDownloads, StorageReport, collect, repo_folder, report
from ..store import ModelStore, engine_for, repo_of, validate_model_ref
from .callback_url import CallbackPolicy
from .callbacks import CallbackSender
from .fit import FitCheck, MemoryReader, check_fits
from .hub_data import guard_library_metadata, validate_revision
from .jobs import DownloadJob, JobStatus, JobStore, LiveJobExists, now_iso
from .plan import DownloadPlan, check_disk_space, plan_download
from .progress import DownloadCancelled, DownloadInterrupted, JobProgress, install_cancel_hooks
from .transfer import Checkpoints, partial_bytes
from .worker import JobRunner, RetryPolicy, make_api

logger = logging.getLogger(__name__)

_STOP = "__stop__"


@dataclass(frozen=True)
class DownloadRequest:
    model_id: str
    revision: str = "main"
    allow_patterns: list[str] | None = None
    ignore_patterns: list[str] | None = None
    activate: bool = False
    callback_url: str | None = None
    force: bool = False  # download a GGUF model that does not fit in RAM anyway


@dataclass(frozen=True)
class RequestOutcome:
    """What a download request led to: a new job, the running one, or nothing to do.

    `model_id` is the model it is about: for a GGUF repo asked for without a tag, the quant
    the plan chose (`org/repo:Q4_K_M`), which is also the job's model id.
    """

    job: DownloadJob | None
    created: bool
    already_complete: bool = False
    model_id: str = ""


def configure_library(settings: Settings) -> None:
    """Process-wide huggingface_hub knobs TalkTuah depends on.

    - The read timeout is our stall watchdog: a transfer that receives no byte for
      `download_stall_timeout` seconds raises, and the library resumes it with a Range
      request (up to 5 times) before our own retries take over.
    - A smaller chunk than the library's 10 MiB makes progress responsive; cancellation
      does not wait for a chunk (progress.install_cancel_hooks).
    - Xet transfers report progress through several bars of their own; plain HTTP, which the
      Hub serves for every file, gives exact per-file bytes.
    """
    hf_constants.HF_HUB_DOWNLOAD_TIMEOUT = int(max(1, settings.download_stall_timeout))
    hf_constants.DOWNLOAD_CHUNK_SIZE = settings.download_chunk_bytes
    hf_constants.HF_HUB_DISABLE_XET = True
    install_cancel_hooks()  # a cancel acts within one network read, not one chunk
    guard_library_metadata()


class DownloadManager:
    def __init__(self, settings: Settings, state: StateDB, store: ModelStore) -> None:
        self.settings = settings
        self.state = state
        self.store = store
        self.jobs = JobStore(state)
        self.callbacks = CallbackSender(
            policy=CallbackPolicy(settings.callback_allow),
            retries=settings.download_callback_retries,
        )
        self._queue: queue.Queue[str] = queue.Queue()
        self._cancels: dict[str, threading.Event] = {}
        self._cancels_lock = threading.Lock()
        self._shutdown = threading.Event()
        self._threads: list[threading.Thread] = []
        # Called with the model id when a job with activate=true completes; Services points it
        # at the engine supervisor so the model is loaded, not just marked active.
        self.on_activate: Callable[[str], None] = self._mark_active
        # Called with every chunk's size as it arrives (the bytes-downloaded counter).
        self.on_bytes: Callable[[int], None] | None = None
        # This machine's RAM, for the GGUF fit check (tests give it a small number).
        self.memory: MemoryReader = total_memory
        self._policy = RetryPolicy(
            retries=settings.download_retries,
            backoff=settings.download_backoff_seconds,
            backoff_max=settings.download_backoff_max_seconds,
        )

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Re-queue what an earlier process left unfinished, then start the workers."""
        configure_library(self.settings)
        unfinished = self.jobs.unfinished()
        self.jobs.prune(self.settings.download_job_retention)
        self.collect_garbage()
        for job in unfinished:
            if job.status == JobStatus.DOWNLOADING:
                job.status = JobStatus.QUEUED
                job.error = None
                self.jobs.save(job)
            logger.info("resuming download job %s (%s)", job.id, job.model_id)
            self._enqueue(job.id)
        for index in range(self.settings.download_workers):
            thread = threading.Thread(
                target=self._work, name=f"talktuah-download-{index}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 10) -> None:
        """Interrupt running transfers; their jobs stay queued and resume on the next start."""
        self._shutdown.set()
        for _ in self._threads:
            self._queue.put(_STOP)
        for thread in self._threads:
            thread.join(timeout)
        self._threads.clear()
        self.callbacks.close(timeout)

    def collect_garbage(self) -> GcReport:
        """Reclaim what no download will use again (storage.py): at start, before any job
        runs, and on `POST /api/storage/gc`. Partials of live jobs are kept, and those of
        ended jobs for `partial_grace` seconds (a later request resumes them)."""
        live = LiveDownloads.of(self.jobs.unfinished())
        ours = {repo_folder(repo_of(m)) for m in self.jobs.model_ids()}
        return collect(
            self.store.models_dir, live=live, grace=self.settings.partial_grace, ours=ours
        )

    def storage_report(self) -> StorageReport:
        return report(self.store.models_dir, live=LiveDownloads.of(self.jobs.unfinished()))

    def _mark_active(self, model_id: str) -> None:
        self.state.active_model = model_id

    # -- requests --------------------------------------------------------------------------

    def request(self, req: DownloadRequest) -> RequestOutcome:
        """Deduplicate, plan against the Hub, check the disk, then queue a job.

        Planning happens here, in the caller's thread, so an unknown repo or quant, a gated
        repo, a full disk or a GGUF model too big for the RAM is answered at once instead of
        surfacing later as a failed job.

        A job's model id is the model it fetches: `org/repo` for a whole repo, and for a GGUF
        repo `org/repo:QUANT` with the quant the plan chose (asked for by tag or by llama.cpp's
        default rule), so the job, its callback and the listing name the same model. The Hub,
        the cache and the verified record key on the repo id (`store.repo_of`).
        """
        if req.callback_url is not None:
            self.callbacks.policy.check(req.callback_url)
        model_id = validate_model_ref(req.model_id)
        repo_id, tag = split_tag(model_id)
        validate_revision(req.revision)
        live = self.jobs.live_for(model_id)
        if live is not None:
            return RequestOutcome(job=live, created=False, model_id=live.model_id)
        done = self._complete_on_disk(model_id, req, trust_untagged=False)
        if done is not None:
            return RequestOutcome(None, created=False, already_complete=True, model_id=done)
        api = make_api(self.settings.hf_endpoint, self.settings.hf_token)
        plan = plan_download(
            api, repo_id, req.revision, self.store.models_dir,
            allow_patterns=req.allow_patterns, ignore_patterns=req.ignore_patterns, quant=tag,
        )  # fmt: skip
        if plan.quant is not None and plan.quant.tag != tag:
            model_id = with_tag(repo_id, plan.quant.tag)  # the quant `org/repo` means
            live = self.jobs.live_for(model_id)
            if live is not None:
                return RequestOutcome(job=live, created=False, model_id=model_id)
        if plan.quant is not None and self._complete_on_disk(model_id, req, plan.commit_hash):
            return RequestOutcome(None, created=False, already_complete=True, model_id=model_id)
        blob_ids = [f.sha256 or f.git_sha1 for f in plan.files if f.path not in plan.cached]
        in_partials = partial_bytes(
            self.store.models_dir, repo_id, [b for b in blob_ids if b is not None]
        )
        check_disk_space(
            plan, model_id, self.store.models_dir, self.settings.download_disk_margin_bytes,
            in_partials,
        )  # fmt: skip
        if not req.force:
            self._check_memory(plan, model_id, repo_id)
        job = self.jobs.new(
            model_id, req.revision,
            allow_patterns=req.allow_patterns, ignore_patterns=req.ignore_patterns,
            activate=req.activate, callback_url=req.callback_url,
        )  # fmt: skip
        job.commit_hash = plan.commit_hash
        job.files = plan.files
        job.files_total = len(plan.files)
        job.bytes_total = plan.bytes_total
        try:
            self.jobs.insert(job)
        except LiveJobExists as exists:
            return RequestOutcome(job=exists.job, created=False, model_id=model_id)
        self._enqueue(job.id)
        return RequestOutcome(job=job, created=True, model_id=model_id)

    def _check_memory(self, plan: DownloadPlan, model_id: str, repo_id: str) -> None:
        """A GGUF model that llama.cpp will run here must fit in RAM (fit.py); models for
        another engine (vLLM on a GPU, an external server) are not this machine's RAM."""
        if plan.quant is None or engine_for(self.settings.engine, "gguf") != "llamacpp":
            return
        check = FitCheck(
            endpoint=self.settings.hf_endpoint, token=self.settings.hf_token,
            models_dir=self.store.models_dir, n_ctx=self.settings.engine_ctx,
            timeout=max(1.0, self.settings.download_stall_timeout), ram=self.memory,
        )  # fmt: skip
        check_fits(check, plan, model_id, repo_id)

    def _complete_on_disk(
        self,
        model_id: str,
        req: DownloadRequest,
        commit: str | None = None,
        *,
        trust_untagged: bool = True,
    ) -> str | None:
        """The model's id when the requested revision (or the commit it was planned at) is
        already here in full, else None. Before planning, `org/repo` of a GGUF repo is
        trusted only when the quant here is the one llama.cpp's rule picks first: which quant
        it means otherwise is only known to the Hub."""
        if req.allow_patterns or req.ignore_patterns:
            return None  # which files the patterns select is only known to the Hub
        try:
            model = self.store.get(model_id)
        except TalkTuahError:
            return None
        if model.model_id != model_id and not trust_untagged and model.quant != DEFAULT_ORDER[0]:
            return None
        here = any(
            rev.complete and (req.revision in rev.refs or rev.commit_hash in (req.revision, commit))
            for rev in model.revisions
        )
        return model.model_id if here else None

    def cancel(self, job_id: str) -> DownloadJob:
        job = self.jobs.get(job_id)
        if not job.status.live:
            return job
        with self._cancels_lock:
            event = self._cancels.get(job_id)
            if event is not None:
                event.set()
            elif job.status == JobStatus.QUEUED:
                job.status = JobStatus.CANCELLED
                job.completed_at = now_iso()
                self.jobs.save(job)
                self._finished(job)
                return job
        # A running job: its worker notices within one chunk (or one stall timeout).
        return self.jobs.get(job_id, detail=False)

    def get(self, job_id: str) -> DownloadJob:
        """A job as readers see it: without its file lists."""
        return self.jobs.get(job_id, detail=False)

    # -- workers ---------------------------------------------------------------------------

    def _enqueue(self, job_id: str) -> None:
        self._queue.put(job_id)

    def _work(self) -> None:
        while True:
            job_id = self._queue.get()
            if job_id == _STOP or self._shutdown.is_set():
                return
            try:
                self._run(job_id)
            except Exception:  # a bug in one job must not kill the worker thread
                logger.exception("download job %s crashed", job_id)

    def _run(self, job_id: str) -> None:
        cancel = threading.Event()
        with self._cancels_lock:
            job = self.jobs.get(job_id)
            if job.status != JobStatus.QUEUED:
                return  # cancelled while it waited
            self._cancels[job_id] = cancel
        job.status = JobStatus.DOWNLOADING
        job.started_at = job.started_at or now_iso()
        job.attempts += 1
        job.error = None
        self.jobs.save(job)
        progress = JobProgress(
            job, self.jobs.save_progress,
            interval=self.settings.download_progress_interval,
            cancel=cancel, shutdown=self._shutdown, on_bytes=self.on_bytes,
        )  # fmt: skip
        runner = JobRunner(
            job=job, models_dir=self.store.models_dir, endpoint=self.settings.hf_endpoint,
            token=self.settings.hf_token, policy=self._policy,
            stall_timeout=self.settings.download_stall_timeout, progress=progress,
            cancel=cancel, persist=self.jobs.save,
            checkpoints=Checkpoints(every_bytes=self.settings.download_checkpoint_bytes),
        )  # fmt: skip
        try:
            with progress.bound():  # a cancel reaches every Hub read of this thread
                runner.run()
        except DownloadCancelled:
            job.status = JobStatus.CANCELLED
            job.error = None
        except DownloadInterrupted:
            job.status = JobStatus.QUEUED  # picked up again by the next start
            job.error = None
        except TalkTuahError as exc:
            job.status = JobStatus.ERROR
            job.error = str(exc)
        except Exception as exc:
            logger.exception("download job %s failed", job_id)
            job.status = JobStatus.ERROR
            job.error = f"Unexpected {type(exc).__name__}: {exc}"
        else:
            # Recorded before the job says complete, so no listing sees it complete and the
            # model not (verified.py).
            self.store.verified.record(repo_of(job.model_id), job.commit_hash or "", job.verified)
            job.status = JobStatus.COMPLETE
            job.error = None
            job.bytes_done = job.bytes_total or job.bytes_done
            job.files_done = job.files_total or job.files_done
            job.eta_seconds = 0
        finally:
            with self._cancels_lock:
                self._cancels.pop(job_id, None)
        if job.status != JobStatus.QUEUED:
            job.completed_at = now_iso()
        self.jobs.save(job)
        if job.status == JobStatus.COMPLETE and job.activate:
            try:
                self.on_activate(job.model_id)
            except TalkTuahError as exc:
                logger.error("could not activate %s after its download: %s", job.model_id, exc)
        if job.status != JobStatus.QUEUED:
            self._finished(job)

    def _finished(self, job: DownloadJob) -> None:
        logger.info("download job %s (%s) ended: %s", job.id, job.model_id, job.status)
        self.jobs.prune(self.settings.download_job_retention)
        if job.callback_url:
            self.callbacks.send(job.callback_url, job.to_api())
