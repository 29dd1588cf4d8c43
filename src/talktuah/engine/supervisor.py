"""EngineSupervisor: what is served, whether it is healthy, and what happens when it is not.

States: `stopped` (nothing served), `loading` (an engine is starting with a model),
`ready` (it serves the active model), `failed` (it died or would not load). A switch loads
the new model and makes it active in state only once the engine serves it; if it will not
load, the previous model is loaded again and the failure is reported with the engine's log.
An engine that dies unexpectedly is restarted with backoff, a bounded number of times.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from ..config import Settings
from ..errors import (
    EngineError,
    ModelNotFoundError,
    ModelNotReadyError,
    SwitchInProgressError,
    SwitchNotSupportedError,
)
from ..state import StateDB
from ..store import ModelStore, validate_model_id
from .base import EngineDriver, EngineState

logger = logging.getLogger(__name__)

LOG_TAIL_LINES = 40
#: How often a loading engine is asked whether it serves yet: every switch waits half of
#: this on average after the engine is ready (bench/switch.py); the question is two
#: loopback GETs, refused at once while the engine is not listening yet.
LOAD_POLL_SECONDS = 0.05


class LoadFailed(Exception):
    """The engine did not come up serving the model; the message says why."""


@dataclass
class Failure:
    model_id: str
    reason: str
    log_tail: list[str]
    at: float = field(default_factory=time.time)


class Traffic:
    """How many requests TalkTuah has in flight to the engine.

    A stop with none in flight need not be graceful (`EngineDriver.kill_when_idle`). The
    proxy counts on the event loop, the supervisor reads from its own threads: one writer
    and an int read, so no lock. A request that gets past the proxy's readiness check in
    the instant before a switch begins may find the engine gone: it gets the same 503
    "being switched, retry" as one sent to an engine that is shutting down.
    """

    def __init__(self) -> None:
        self.in_flight = 0

    def enter(self) -> None:
        self.in_flight += 1

    def leave(self) -> None:
        self.in_flight -= 1

    @property
    def idle(self) -> bool:
        return self.in_flight == 0


class EngineSupervisor:
    def __init__(
        self, settings: Settings, state: StateDB, store: ModelStore, driver: EngineDriver
    ) -> None:
        self.settings = settings
        self.db = state
        self.store = store
        self.driver = driver
        self._lock = threading.RLock()
        self._state = EngineState.STOPPED
        self._model: str | None = None  # what the engine serves (when ready)
        self._loading: str | None = None  # what it is loading
        self._loading_since: float | None = None
        self._phase = ""
        self._message = "No model is active yet."
        self._failure: Failure | None = None
        self._switch_failed = False
        self._restarts = 0
        self._busy = threading.Lock()  # held by whoever is loading or stopping the engine
        self._stop = threading.Event()
        self._monitor: threading.Thread | None = None
        self._http = httpx.Client(timeout=5)
        self.traffic = Traffic()

    # -- what clients see ------------------------------------------------------------------

    @property
    def state(self) -> EngineState:
        return self._state

    @property
    def restarts(self) -> int:
        return self._restarts

    @property
    def model(self) -> str | None:
        """The model the engine serves right now (None unless ready)."""
        return self._model if self._state == EngineState.READY else None

    def status(self) -> dict[str, Any]:
        with self._lock:
            failure = self._failure
            reported = self._state
            if self._switch_failed and self._state == EngineState.READY:
                reported = EngineState.FAILED  # the switch failed; the previous model serves
            body: dict[str, Any] = {
                "status": str(reported),
                "engine_state": str(self._state),
                "engine": self.driver.name,
                "model_loaded": self._state == EngineState.READY,
                "current_model": self.db.active_model,
                "serving_model": self.model,
                "loading_model": self._loading,
                "message": self._message,
                "restarts": self._restarts,
            }
            if self._loading_since is not None:
                body["loading"] = {
                    "model": self._loading,
                    "phase": self._phase,
                    "elapsed_seconds": round(time.monotonic() - self._loading_since, 1),
                }
            if failure is not None:
                body["error"] = failure.reason
                body["failed_model"] = failure.model_id
                body["log_tail"] = failure.log_tail
            return body

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Clean up after a killed predecessor, then load the active model in the background."""
        self.driver.cleanup_orphans()
        active = self.db.active_model
        if not self.driver.manages_models:
            self._spawn(self._attach_external)
        elif active is None:
            self._set(EngineState.STOPPED, "No model is active: POST /api/switch-model.")
        elif not self._downloaded(active):
            self._set(
                EngineState.STOPPED,
                f"The active model {active} is not downloaded: "
                f"POST /api/download-model?model_id={active}&auto=true, then switch to it.",
            )
        else:
            self._spawn(lambda: self._switch(active, previous=None))
        self._monitor = threading.Thread(target=self._watch, name="engine-monitor", daemon=True)
        self._monitor.start()

    def stop(self) -> None:
        self._stop.set()
        with self._busy:
            self._stop_engine()
            self._set(EngineState.STOPPED, "TalkTuah is shutting down.")
        if self._monitor is not None:
            self._monitor.join(5)
        self._http.close()

    def unload(self, reason: str) -> None:
        """Stop serving (the active model was deleted, say)."""
        with self._busy:
            self._stop_engine()
            with self._lock:
                self._model = None
                self._set(EngineState.STOPPED, reason)

    def switch(self, model_id: str) -> None:
        """Start loading `model_id` in the background; raise at once if it cannot be tried."""
        validate_model_id(model_id)
        if not self.driver.manages_models:
            raise SwitchNotSupportedError(
                f"The {self.driver.name} engine at {self.driver.base_url} is run outside "
                "TalkTuah: change its model there (TALKTUAH_ENGINE=transformers|vllm|docker "
                "lets TalkTuah switch models)."
            )
        model = self.store.get(model_id)  # ModelNotFoundError -> 404
        if not model.complete:
            raise ModelNotReadyError(
                f"{model_id} is not completely downloaded. Wait for its download "
                "(GET /api/download-progress?model_id=...) or download it again."
            )
        if not self._busy.acquire(blocking=False):
            raise SwitchInProgressError(
                f"A switch to {self._loading} is already running. Wait for it "
                "(GET /api/model-loading-status), then switch again."
            )
        previous = self._model if self._state == EngineState.READY else None
        with self._lock:
            self._switch_failed = False
            self._loading = model_id
            self._loading_since = time.monotonic()
            self._phase = "queued"
            self._state = EngineState.LOADING
            self._message = f"Switching to {model_id}."
        self._spawn(lambda: self._switch(model_id, previous, locked=True))

    # -- internals -------------------------------------------------------------------------

    def _spawn(self, target: Any) -> None:
        threading.Thread(target=target, name="engine-switch", daemon=True).start()

    def _downloaded(self, model_id: str) -> bool:
        try:
            return self.store.get(model_id).complete
        except ModelNotFoundError:
            return False

    def _set(self, state: EngineState, message: str) -> None:
        with self._lock:
            self._state = state
            self._message = message
            if state != EngineState.LOADING:
                self._loading = None
                self._loading_since = None
                self._phase = ""

    def _switch(self, model_id: str, previous: str | None, locked: bool = False) -> None:
        if not locked:
            self._busy.acquire()
        try:
            try:
                self._load(model_id)
            except LoadFailed as exc:
                self._on_load_failure(model_id, previous, str(exc))
                return
            with self._lock:
                self._model = model_id
                self._failure = None
                self._switch_failed = False
                self._restarts = 0
                self.db.active_model = model_id
                self._set(EngineState.READY, f"{model_id} is loaded and serving.")
        finally:
            self._busy.release()

    def _on_load_failure(self, model_id: str, previous: str | None, reason: str) -> None:
        tail = self.driver.log_tail(LOG_TAIL_LINES)
        self._stop_engine()
        logger.error("engine failed to load %s: %s", model_id, reason)
        with self._lock:
            self._failure = Failure(model_id, reason, tail)
            self._model = None
        if previous is None or previous == model_id:
            self._set(EngineState.FAILED, f"{model_id} failed to load: {reason}")
            return
        try:
            self._load(previous)
        except LoadFailed as exc:
            self._set(
                EngineState.FAILED,
                f"{model_id} failed to load ({reason}); restoring {previous} failed too: {exc}",
            )
            return
        with self._lock:
            self._model = previous
            self._switch_failed = True
            self._set(
                EngineState.READY,
                f"{model_id} failed to load: {reason}. {previous} was restored and serves.",
            )

    def _load(self, model_id: str) -> None:
        """Start the engine with `model_id` and wait until it serves it, or raise LoadFailed."""
        with self._lock:
            self._state = EngineState.LOADING
            self._loading = model_id
            self._loading_since = self._loading_since or time.monotonic()
            self._phase = "starting engine"
            self._message = f"Loading {model_id}."
            self._model = None
        self._stop_engine()  # the one serving now, if any: a switch starts a new process
        try:
            self.driver.start(model_id)
        except EngineError as exc:
            raise LoadFailed(str(exc)) from exc
        except OSError as exc:
            raise LoadFailed(f"cannot start the engine: {exc}") from exc
        deadline = time.monotonic() + self.settings.engine_start_timeout
        self._phase = "loading weights"
        while time.monotonic() < deadline:
            if self._stop.is_set():
                raise LoadFailed("TalkTuah is shutting down")
            if not self.driver.running():
                raise LoadFailed("the engine process exited while loading")
            if self._serves(model_id):
                return
            time.sleep(LOAD_POLL_SECONDS)
        raise LoadFailed(
            f"not serving after {self.settings.engine_start_timeout:.0f} s "
            "(TALKTUAH_ENGINE_START_TIMEOUT)"
        )

    def _stop_engine(self) -> None:
        self.driver.stop(idle=self.traffic.idle)

    def _serves(self, model_id: str) -> bool:
        """Healthy, and its model list names the model (the engine finished loading it)."""
        try:
            if self._http.get(self.driver.health_url).status_code != 200:
                return False
            listed = self._http.get(f"{self.driver.base_url}/v1/models").json()
        except (httpx.HTTPError, ValueError):
            return False
        wanted = self.driver.served_name(model_id)
        ids = {str(m.get("id", "")).split("@")[0] for m in listed.get("data", [])}
        return wanted in ids

    def _attach_external(self) -> None:
        with self._busy:
            if self._healthy():
                model = self._first_model()
                with self._lock:
                    self._model = model
                    self._set(EngineState.READY, f"External engine at {self.driver.base_url}.")
            else:
                self._set(
                    EngineState.FAILED,
                    f"The external engine at {self.driver.base_url} does not answer; check "
                    "TALKTUAH_ENGINE_URL.",
                )

    def _first_model(self) -> str | None:
        try:
            data = self._http.get(f"{self.driver.base_url}/v1/models").json().get("data", [])
        except (httpx.HTTPError, ValueError):
            return None
        return str(data[0]["id"]) if data else None

    def _healthy(self) -> bool:
        try:
            return self._http.get(self.driver.health_url).status_code == 200
        except httpx.HTTPError:
            return False

    def _watch(self) -> None:
        """Health polling; restarts a dead engine with backoff, up to the configured limit."""
        while not self._stop.wait(self.settings.engine_health_interval):
            if not self._busy.acquire(blocking=False):
                continue  # a switch or restart is under way
            try:
                self._check()
            except Exception:  # the monitor must outlive any single check
                logger.exception("engine health check failed")
            finally:
                self._busy.release()

    def _check(self) -> None:
        if not self.driver.manages_models:
            if self._state != EngineState.READY and self._healthy():
                self._model = self._first_model()
                self._set(EngineState.READY, f"External engine at {self.driver.base_url}.")
            elif self._state == EngineState.READY and not self._healthy():
                self._set(EngineState.FAILED, f"External engine at {self.driver.base_url} is down.")
            return
        if self._state == EngineState.READY and not self.driver.running():
            model = self._model
            assert model is not None
            tail = self.driver.log_tail(LOG_TAIL_LINES)
            with self._lock:
                self._failure = Failure(model, "the engine process died", tail)
                self._model = None
                self._set(EngineState.FAILED, f"The engine serving {model} died unexpectedly.")
            self._restart(model)

    def _restart(self, model_id: str) -> None:
        while self._restarts < self.settings.engine_restart_limit and not self._stop.is_set():
            self._restarts += 1
            delay = self.settings.engine_restart_backoff * 2 ** (self._restarts - 1)
            logger.warning(
                "restarting the engine for %s in %.1fs (attempt %d of %d)",
                model_id, delay, self._restarts, self.settings.engine_restart_limit,
            )  # fmt: skip
            if self._stop.wait(delay):
                return
            try:
                self._load(model_id)
            except LoadFailed as exc:
                tail = self.driver.log_tail(LOG_TAIL_LINES)
                self._stop_engine()
                with self._lock:
                    self._failure = Failure(model_id, str(exc), tail)
                    self._set(EngineState.FAILED, f"Restarting {model_id} failed: {exc}")
                continue
            with self._lock:
                self._model = model_id
                self._set(
                    EngineState.READY,
                    f"{model_id} is serving again after a restart ({self._restarts} so far).",
                )
            return
        self._set(
            EngineState.FAILED,
            f"The engine for {model_id} kept failing; gave up after "
            f"{self.settings.engine_restart_limit} restarts. POST /api/switch-model to retry.",
        )

    async def wait_ready(self, timeout: float) -> bool:
        """For the proxy: wait (without blocking the loop) while the engine is loading."""
        deadline = time.monotonic() + timeout
        while self._state == EngineState.LOADING and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        return self._state == EngineState.READY
