"""EngineSupervisor: what is served, whether it is healthy, and what happens when it is not.

States: `stopped` (nothing served), `loading` (an engine is starting with a model),
`ready` (it serves the active model), `failed` (it died or would not load). A switch loads
the new model and makes it active in state only once the engine serves it; if it will not
load, the previous model is loaded again and the failure is reported with the engine's log.
An engine that dies unexpectedly is restarted with backoff, a bounded number of times; a
switch asked for during a backoff replaces the restart.

All of it lives in one immutable `EngineStatus` (status.py), replaced whole under `_lock`;
`_busy` is held only while the engine is being loaded or stopped.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import replace
from enum import StrEnum
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
from ..store import ModelStore, validate_model_ref
from .base import EngineDriver, EngineState
from .diagnosis import diagnose
from .status import EngineStatus, Failure, FailureKind, PendingRestart

logger = logging.getLogger(__name__)

LOG_TAIL_LINES = 40
#: How often a loading engine is asked whether it serves yet: every switch waits half of
#: this on average after the engine is ready (bench/switch.py); the question is two
#: loopback GETs, refused at once while the engine is not listening yet.
LOAD_POLL_SECONDS = 0.05
#: How long a switch waits for the engine held by something brief (a health check) before
#: it answers 409; a load in progress is answered at once.
BUSY_WAIT_SECONDS = 2.0


class LoadFailed(Exception):
    """The engine did not come up serving the model; the message says why."""


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


class SwitchOutcome(StrEnum):
    """What a switch request did: the API answers 200 for the first two, 202 for the last."""

    ALREADY_SERVING = "already_serving"
    ALREADY_LOADING = "already_loading"
    SWITCHING = "switching"


class EngineSupervisor:
    def __init__(
        self, settings: Settings, state: StateDB, store: ModelStore, driver: EngineDriver
    ) -> None:
        self.settings = settings
        self.db = state
        self.store = store
        self.driver = driver
        self._lock = threading.Lock()  # guards replacing `_status`
        self._status = EngineStatus()
        self._busy = threading.Lock()  # held by whoever is loading or stopping the engine
        self._stop = threading.Event()
        self._monitor: threading.Thread | None = None
        self._http = httpx.Client(timeout=5)
        self.traffic = Traffic()

    # -- what clients see ------------------------------------------------------------------

    @property
    def current(self) -> EngineStatus:
        """The status now: one immutable value, safe to read field by field."""
        return self._status

    @property
    def state(self) -> EngineState:
        return self._status.state

    @property
    def restarts(self) -> int:
        return self._status.restarts

    @property
    def model(self) -> str | None:
        """The model the engine serves right now (None unless ready)."""
        return self._status.serving

    def status(self) -> dict[str, Any]:
        return self._status.to_api(engine=self.driver.name, active_model=self.db.active_model)

    def dismiss_failure(self) -> bool:
        """Forget the last failure (the person has read it); False if there was none."""
        with self._lock:
            had = self._status.failure is not None
            self._status = replace(self._status, failure=None, switch_failed=False)
        return had

    def forget(self, model_id: str) -> None:
        """`model_id` was deleted: a failure about it no longer helps anyone."""
        with self._lock:
            failure = self._status.failure
            if failure is not None and failure.model_id == model_id:
                self._status = replace(self._status, failure=None, switch_failed=False)

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Clean up after a killed predecessor, then load the active model in the background."""
        self.driver.cleanup_orphans()
        active = self.db.active_model
        if not self.driver.manages_models:
            self._spawn(self._attach_external)
        elif active is None:
            self._settle(
                EngineState.STOPPED,
                "No model is active: switch to one (`talktuah use ORG/NAME`, or "
                "POST /api/switch-model?model_id=ORG/NAME).",
            )
        elif not self._downloaded(active):
            self._settle(
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
            self._settle(EngineState.STOPPED, "TalkTuah is shutting down.", restart=None)
        if self._monitor is not None:
            self._monitor.join(5)
        self._http.close()

    def unload(self, reason: str) -> None:
        """Stop serving (the active model was deleted, say)."""
        with self._busy:
            self._stop_engine()
            self._settle(EngineState.STOPPED, reason, restart=None)

    def switch(self, model_id: str, *, force: bool = False) -> SwitchOutcome:
        """Start loading `model_id` in the background; raise at once if it cannot be tried.

        Asking for the model that serves (or is loading) is answered at once and loads
        nothing — clients such as the n8n example ask on every run — unless `force`. A
        restart waiting out its backoff does not hold the engine: the switch replaces it.
        """
        model_id = validate_model_ref(model_id)  # `org/repo:q8_0` is `org/repo:Q8_0`
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
        already = None if force else self._already(model_id)
        if already is not None:
            return already
        # Only loads and stops hold the engine for long; a health check holds it for an
        # instant, which a switch waits out rather than answer 409.
        wait = 0 if self._status.state == EngineState.LOADING else BUSY_WAIT_SECONDS
        if not self._busy.acquire(timeout=wait):
            raise SwitchInProgressError(self._busy_message())
        already = None if force else self._already(model_id)
        if already is not None:  # a restart brought it back while we waited
            self._busy.release()
            return already
        with self._lock:
            now = self._status
            previous = now.serving if now.state == EngineState.READY else None
            self._status = replace(
                now.loading_model(model_id, f"Switching to {model_id}."),
                loading_since=time.monotonic(),
                phase="queued",
                switch_failed=False,
            )
        self._spawn(lambda: self._switch(model_id, previous, locked=True))
        return SwitchOutcome.SWITCHING

    # -- internals -------------------------------------------------------------------------

    def _already(self, model_id: str) -> SwitchOutcome | None:
        """Whether a switch to `model_id` has nothing to do."""
        with self._lock:
            now = self._status
            if now.state == EngineState.READY and now.serving == model_id:
                # The request succeeded: an old failed switch is no longer its outcome.
                self._status = replace(now, switch_failed=False)
                return SwitchOutcome.ALREADY_SERVING
            if now.state == EngineState.LOADING and now.loading == model_id:
                return SwitchOutcome.ALREADY_LOADING
        return None

    def _busy_message(self) -> str:
        now = self._status
        if now.state == EngineState.LOADING and now.loading is not None:
            what = f"The engine is loading {now.loading}"
        else:
            what = "The engine is being stopped"
        return (
            f"{what}; one switch at a time. Wait until it is done (GET "
            "/api/model-loading-status), then switch again."
        )

    def _spawn(self, target: Any) -> None:
        threading.Thread(target=target, name="engine-switch", daemon=True).start()

    def _downloaded(self, model_id: str) -> bool:
        try:
            return self.store.get(model_id).complete
        except ModelNotFoundError:
            return False

    def _update(self, **changes: Any) -> None:
        with self._lock:
            self._status = replace(self._status, **changes)

    def _settle(
        self, state: EngineState, message: str, serving: str | None = None, **changes: Any
    ) -> None:
        with self._lock:
            self._status = replace(self._status.settled(state, message, serving), **changes)

    def _failure(self, model_id: str, reason: str, kind: FailureKind) -> Failure:
        """What went wrong, with the engine's log read now (before the engine is stopped)."""
        tail = self.driver.log_tail(LOG_TAIL_LINES)
        found = diagnose(tail, reason, engine=self.driver.name, model_id=model_id)
        return Failure(model_id, reason, tuple(tail), found.cause, found.hint, kind)

    def _switch(self, model_id: str, previous: str | None, locked: bool = False) -> None:
        if not locked:
            self._busy.acquire()
        try:
            try:
                self._load(model_id)
            except LoadFailed as exc:
                self._on_load_failure(model_id, previous, str(exc))
                return
            self.db.active_model = model_id
            self._settle(
                EngineState.READY,
                f"{model_id} is loaded and serving.",
                serving=model_id,
                failure=None,
                switch_failed=False,
                restarts=0,
            )
        finally:
            self._busy.release()

    def _on_load_failure(self, model_id: str, previous: str | None, reason: str) -> None:
        rollback = previous is not None and previous != model_id
        failure = self._failure(
            model_id, reason, FailureKind.SWITCH if rollback else FailureKind.LOAD
        )
        self._stop_engine()
        logger.error("engine failed to load %s: %s", model_id, reason)
        if previous is None or not rollback:
            self._settle(
                EngineState.FAILED, f"{model_id} failed to load: {failure.cause}", failure=failure
            )
            return
        self._update(failure=failure)
        try:
            self._load(previous)
        except LoadFailed as exc:
            self._settle(
                EngineState.FAILED,
                f"{model_id} failed to load ({failure.cause}); restoring {previous} failed "
                f"too: {exc}",
                failure=replace(failure, kind=FailureKind.LOAD),
            )
            return
        self._settle(
            EngineState.READY,
            f"{previous} was restored and serves; {model_id} failed to load: {failure.cause}",
            serving=previous,
            switch_failed=True,
        )

    def _load(self, model_id: str) -> None:
        """Start the engine with `model_id` and wait until it serves it, or raise LoadFailed.

        The phase is "starting engine" until the process answers HTTP at all, then
        "loading weights" until its model list names the model.
        """
        with self._lock:
            self._status = self._status.loading_model(model_id, f"Loading {model_id}.")
        self._stop_engine()  # the one serving now, if any: a switch starts a new process
        try:
            self.driver.start(model_id)
        except EngineError as exc:
            raise LoadFailed(str(exc)) from exc
        except OSError as exc:
            raise LoadFailed(f"cannot start the engine: {exc}") from exc
        deadline = time.monotonic() + self.settings.engine_start_timeout
        answered = False
        while time.monotonic() < deadline:
            if self._stop.is_set():
                raise LoadFailed("TalkTuah is shutting down")
            if not self.driver.running():
                raise LoadFailed("the engine process exited while loading")
            serves = self._serves(model_id)
            if serves:
                return
            if serves is False and not answered:
                answered = True
                self._update(phase="loading weights")
            time.sleep(LOAD_POLL_SECONDS)
        raise LoadFailed(
            f"not serving after {self.settings.engine_start_timeout:.0f} s "
            "(TALKTUAH_ENGINE_START_TIMEOUT)"
        )

    def _stop_engine(self) -> None:
        self.driver.stop(idle=self.traffic.idle)

    def _serves(self, model_id: str) -> bool | None:
        """True once healthy with the model listed (it finished loading it); False while it
        answers without that; None while nothing answers yet."""
        try:
            health = self._http.get(self.driver.health_url)
        except httpx.HTTPError:
            return None
        try:
            if health.status_code != 200:
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
                self._settle(
                    EngineState.READY,
                    f"External engine at {self.driver.base_url}.",
                    serving=self._first_model(),
                )
            else:
                self._settle(
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

    def _next_check(self) -> float:
        """Seconds until the monitor looks again: the health interval, or a restart's due."""
        interval = self.settings.engine_health_interval
        pending = self._status.restart
        if pending is not None:
            interval = min(interval, max(0.0, pending.due - time.monotonic()))
        return interval

    def _watch(self) -> None:
        """Health polling; restarts a dead engine with backoff, up to the configured limit.

        The backoff is waited out without holding the engine, so a switch may come first.
        """
        while not self._stop.wait(self._next_check()):
            if not self._busy.acquire(blocking=False):
                continue  # a switch or restart is under way
            try:
                self._check()
            except Exception:  # the monitor must outlive any single check
                logger.exception("engine health check failed")
            finally:
                self._busy.release()

    def _check(self) -> None:
        now = self._status
        if not self.driver.manages_models:
            if now.state != EngineState.READY and self._healthy():
                self._settle(
                    EngineState.READY,
                    f"External engine at {self.driver.base_url}.",
                    serving=self._first_model(),
                )
            elif now.state == EngineState.READY and not self._healthy():
                self._settle(
                    EngineState.FAILED, f"External engine at {self.driver.base_url} is down."
                )
            return
        if now.restart is not None:
            if time.monotonic() >= now.restart.due:
                self._restart(now.restart)
            return
        if now.state == EngineState.READY and not self.driver.running():
            model = now.serving
            assert model is not None
            failure = self._failure(model, "the engine process died", FailureKind.CRASH)
            self._settle(
                EngineState.FAILED,
                f"The engine serving {model} died unexpectedly.",
                failure=failure,
                switch_failed=False,
            )
            self._schedule_restart(model)

    def _schedule_restart(self, model_id: str) -> None:
        """Plan the next restart after its backoff, or give up past the limit."""
        now = self._status
        limit = self.settings.engine_restart_limit
        if now.restarts >= limit or self._stop.is_set():
            self._update(
                restart=None,
                message=f"The engine for {model_id} kept failing; gave up after {limit} "
                f"restarts. Switch to a model to retry (`talktuah use {model_id}`, or "
                f"POST /api/switch-model?model_id={model_id}).",
            )
            return
        attempt = now.restarts + 1
        delay = self.settings.engine_restart_backoff * 2 ** (attempt - 1)
        logger.warning(
            "restarting the engine for %s in %.1fs (attempt %d of %d)",
            model_id, delay, attempt, limit,
        )  # fmt: skip
        pending = PendingRestart(
            model_id, attempt, limit, at=time.time() + delay, due=time.monotonic() + delay
        )
        self._update(
            restarts=attempt,
            restart=pending,
            message=f"{now.message} Restarting {model_id} in {delay:.0f} s (attempt {attempt} "
            f"of {limit}); a switch to any model replaces the restart.",
        )

    def _restart(self, pending: PendingRestart) -> None:
        model_id = pending.model_id
        try:
            self._load(model_id)
        except LoadFailed as exc:
            failure = self._failure(model_id, str(exc), FailureKind.RESTART)
            self._stop_engine()
            self._settle(
                EngineState.FAILED,
                f"Restarting {model_id} failed: {failure.cause}.",
                failure=failure,
                switch_failed=False,
            )
            self._schedule_restart(model_id)
            return
        self._settle(
            EngineState.READY,
            f"{model_id} is serving again after a restart ({pending.attempt} so far).",
            serving=model_id,
        )

    async def wait_ready(self, timeout: float) -> bool:
        """For the proxy: wait (without blocking the loop) while the engine is loading."""
        deadline = time.monotonic() + timeout
        while self._status.state == EngineState.LOADING and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        return self._status.state == EngineState.READY
