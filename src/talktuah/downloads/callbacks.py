"""POST a job's final state to a `callback_url` (an n8n Webhook node, typically).

Sent from a thread of its own so a slow webhook never holds a download worker; retried with
backoff; a failure is logged and never changes the job.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import httpx

logger = logging.getLogger(__name__)


class CallbackSender:
    def __init__(self, *, retries: int = 3, backoff: float = 1.0, timeout: float = 10.0) -> None:
        self.retries = retries
        self.backoff = backoff
        self.timeout = timeout
        self._threads: list[threading.Thread] = []

    def send(self, url: str, payload: dict[str, Any]) -> None:
        thread = threading.Thread(target=self._deliver, args=(url, payload), daemon=True)
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def _deliver(self, url: str, payload: dict[str, Any]) -> None:
        for attempt in range(1, self.retries + 2):
            try:
                response = httpx.post(url, json=payload, timeout=self.timeout)
                if response.status_code < 400:
                    return
                cause = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                cause = f"{type(exc).__name__}: {exc}"
            if attempt <= self.retries:
                time.sleep(self.backoff * 2 ** (attempt - 1))
        logger.warning(
            "callback for job %s to %s failed after %d attempts (%s)",
            payload.get("job_id"), url, self.retries + 1, cause,
        )  # fmt: skip

    def close(self, timeout: float) -> None:
        for thread in self._threads:
            thread.join(timeout)
