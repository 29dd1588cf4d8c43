"""Real byte progress from huggingface_hub's own progress hook.

`hf_hub_download(tqdm_class=...)` instantiates the class once per file transfer and calls
`update(n)` for every chunk written (`update(-n)` when a server ignored a Range request and
the file restarts). `JobProgress` turns those calls into bytes done, a moving-average speed
and an ETA, and raises from inside `update` to stop a transfer: the library then deletes its
temp file itself.

`update` comes once per `DOWNLOAD_CHUNK_SIZE` bytes only (httpx2's `iter_bytes` gathers a
whole chunk first), so a hub that drips bytes, slower than a chunk per stall timeout but
never silent long enough to trip the read timeout, would hold a cancel for the whole chunk.
So cancellation is also checked on every network read: `install_cancel_hooks` gives
huggingface_hub's HTTP client hooks that refuse a new request of a cancelled job (the
library's own resume after a read timeout included) and wrap each response body so that
every piece the socket delivers checks the job first. The job is found through the
worker thread it runs on (`JobProgress.bound`).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx2
from huggingface_hub.utils import _http as hf_http

from .jobs import DownloadJob

_bound = threading.local()  # .progress: the JobProgress of the job this thread transfers


class DownloadCancelled(Exception):
    """Raised from the progress hook when the job was cancelled."""


class DownloadInterrupted(Exception):
    """Raised from the progress hook when TalkTuah is shutting down; the job resumes later."""


class JobProgress:
    """Counts bytes for one job and persists them at most every `interval` seconds.

    `bytes_done` never goes backwards: when a transfer restarts (a retry from zero), the
    figure holds until real bytes pass it again, so a client never sees progress drop.
    """

    def __init__(
        self,
        job: DownloadJob,
        persist: Callable[[DownloadJob], None],
        *,
        interval: float = 0.5,
        window: float = 5.0,
        cancel: threading.Event,
        shutdown: threading.Event,
        on_bytes: Callable[[int], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.job = job
        self._clock = clock  # the speed's samples and the persistence throttle
        self._persist = persist
        self._interval = interval
        self._window = window
        self._cancel = cancel
        self._shutdown = shutdown
        self._on_bytes = on_bytes
        self._lock = threading.Lock()
        self._settled = 0  # bytes of files finished (downloaded or found in cache)
        self._inflight = 0  # bytes of the file being transferred
        self._samples: deque[tuple[float, int]] = deque()
        self._received = 0  # bytes that actually crossed the network, for the speed
        self._last_flush = 0.0

    def start(self, settled: int) -> None:
        with self._lock:
            self._settled = settled
            self._inflight = 0
            self._publish(force=True)

    @contextmanager
    def bound(self) -> Iterator[None]:
        """Make this job's cancel reach every Hub request the current thread makes."""
        previous = getattr(_bound, "progress", None)
        _bound.progress = self
        try:
            yield
        finally:
            _bound.progress = previous

    def check(self) -> None:
        if self._cancel.is_set():
            raise DownloadCancelled(self.job.id)
        if self._shutdown.is_set():
            raise DownloadInterrupted(self.job.id)

    def transferred(self, delta: int) -> None:
        self.check()
        with self._lock:
            self._inflight = max(0, self._inflight + delta)
            if delta > 0:
                self._received += delta
                if self._on_bytes is not None:
                    self._on_bytes(delta)
            self._publish()

    def file_restarted(self) -> None:
        with self._lock:
            self._inflight = 0

    def file_resumed(self, offset: int) -> None:
        """A transfer continues a partial: its bytes count as done at once (they are on
        disk), but not as received (the speed is what crosses the network now)."""
        with self._lock:
            self._inflight = max(0, offset)
            self._publish(force=True)

    def file_settled(self, size: int) -> None:
        with self._lock:
            self._settled += size
            self._inflight = 0
            self.job.files_done += 1
            self._publish(force=True)

    def _publish(self, force: bool = False) -> None:
        job = self.job
        total = job.bytes_total or 0
        done = min(total, self._settled + self._inflight) if total else 0
        job.bytes_done = max(job.bytes_done, done)
        now = self._clock()
        self._samples.append((now, self._received))
        while len(self._samples) > 2 and now - self._samples[0][0] > self._window:
            self._samples.popleft()
        first_t, first_b = self._samples[0]
        if now - first_t >= 0.2:
            job.speed_bps = (self._received - first_b) / (now - first_t)
            remaining = max(0, total - job.bytes_done)
            job.eta_seconds = remaining / job.speed_bps if job.speed_bps > 0 else None
        if force or now - self._last_flush >= self._interval:
            self._last_flush = now
            self._persist(job)

    def bar_class(self) -> type[ProgressBar]:
        """A class to pass as `tqdm_class`, bound to this job."""
        return type("JobProgressBar", (ProgressBar,), {"tracker": self})


class ProgressBar:
    """The minimal tqdm surface `hf_hub_download` uses; not a tqdm subclass on purpose.

    huggingface_hub passes only tqdm's display keywords to a foreign class (never `name=`),
    and we need none of tqdm's rendering, locking or monitor thread.
    """

    tracker: JobProgress

    def __init__(self, *args: Any, initial: int = 0, total: int | None = None, **kwargs: Any):
        self.n = initial
        self.total = total
        self.tracker.file_restarted()
        if initial:
            self.tracker.transferred(initial)

    def update(self, n: int | float | None = 1) -> bool | None:
        delta = int(n or 0)
        self.n += delta
        self.tracker.transferred(delta)
        return None

    def close(self) -> None:
        return None

    def refresh(self, *args: Any, **kwargs: Any) -> None:
        return None

    def set_postfix_str(self, *args: Any, **kwargs: Any) -> None:
        return None

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _CheckedStream(httpx2.SyncByteStream):
    """A response body that checks its job before handing on each piece the socket gave."""

    def __init__(self, inner: httpx2.SyncByteStream, progress: JobProgress) -> None:
        self._inner = inner
        self._progress = progress

    def __iter__(self) -> Iterator[bytes]:
        for piece in self._inner:
            self._progress.check()
            yield piece

    def close(self) -> None:
        self._inner.close()


def _check_before_request(request: httpx2.Request) -> None:
    progress: JobProgress | None = getattr(_bound, "progress", None)
    if progress is not None:
        progress.check()


def _check_while_reading(response: httpx2.Response) -> None:
    progress: JobProgress | None = getattr(_bound, "progress", None)
    if progress is not None and isinstance(response.stream, httpx2.SyncByteStream):
        response.stream = _CheckedStream(response.stream, progress)


def _client_with_cancel_hooks() -> httpx2.Client:
    client = hf_http.default_client_factory()
    hooks = client.event_hooks
    client.event_hooks = {
        "request": [*hooks.get("request", []), _check_before_request],
        "response": [*hooks.get("response", []), _check_while_reading],
    }
    return client


_installed = threading.Event()


def install_cancel_hooks() -> None:
    """huggingface_hub's shared client gets the hooks above (they act for threads bound to
    a job only). Idempotent: the library's client is rebuilt on the first call only."""
    if not _installed.is_set():
        _installed.set()
        hf_http.set_client_factory(_client_with_cancel_hooks)
