"""EngineSupervisor: the default model — what `switch-model` changes and
`/api/model-loading-status` reports — on top of the engine pool.

Each loaded model is an `EngineInstance` in the `EnginePool` (pool.py), with its own state
machine (lifecycle.py) and command loop (instance.py); restarts with backoff happen there.
What is left here is the default model's contract, kept from the single-engine days: it
is loaded at start and pinned; a switch loads the new model beside it (making room under
the limits, unpinning the old one so it may go), makes the new one the default once it
serves, then unloads the old one; a switch that fails leaves the old one serving (loaded
again if it had to make room) and a failure notice to read and dismiss.

No thread is started per switch: the switch posts a `Load` and the outcome arrives as the
instance's status changes (`_on_instance`).
"""

from __future__ import annotations

import logging
import threading
import time
from contextvars import ContextVar
from dataclasses import replace
from enum import StrEnum
from typing import Any

from ..config import Settings
from ..errors import (
    ModelNotFoundError,
    ModelNotReadyError,
    SwitchInProgressError,
    SwitchNotSupportedError,
)
from ..metrics import Metrics
from ..model_id import ModelId
from ..state import StateDB
from ..store import ModelStore
from .base import EngineDriver, EngineState
from .budget import NoRoom
from .instance import Clock, EngineInstance, Traffic
from .lifecycle import InstanceState, InstanceStatus
from .pool import EnginePool
from .status import EngineStatus, Failure, FailureKind

logger = logging.getLogger(__name__)

#: The instance the request being handled was routed to (set by `EngineProxy.route`), so
#: that `supervisor.driver` and `supervisor.traffic` name that request's engine in the code
#: that forwards it, and the default model's anywhere else.
ROUTED: ContextVar[EngineInstance | None] = ContextVar("talktuah_routed", default=None)

__all__ = ["ROUTED", "EngineSupervisor", "SwitchOutcome", "Traffic"]


class SwitchOutcome(StrEnum):
    """What a switch request did: the API answers 200 for the first two, 202 for the last."""

    ALREADY_SERVING = "already_serving"
    ALREADY_LOADING = "already_loading"
    SWITCHING = "switching"


_ENGINE_STATE = {
    InstanceState.LOADING: EngineState.LOADING,
    InstanceState.READY: EngineState.READY,
    InstanceState.FAILED: EngineState.FAILED,
    InstanceState.RESTARTING: EngineState.FAILED,  # the API's meaning: down, restart pending
    InstanceState.UNLOADING: EngineState.STOPPED,
    InstanceState.STOPPED: EngineState.STOPPED,
}


class EngineSupervisor:
    def __init__(
        self,
        settings: Settings,
        state: StateDB,
        store: ModelStore,
        driver: EngineDriver | None = None,
        metrics: Metrics | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self.settings = settings
        self.db = state
        self.store = store
        self.pool = EnginePool(settings, store, metrics or Metrics(), clock=clock)
        if driver is not None:
            self.pool.template = driver
        self.pool.listeners.append(self._on_instance)
        self._lock = threading.Lock()
        self._switching: str | None = None  # the model a switch (or rollback) loads
        self._switch_from: str | None = None  # the default when the switch began
        self._switch_since: float | None = None
        self._restoring = False  # the switch failed and the old default is loading again
        self._notice: Failure | None = None  # a switch that failed, until dismissed
        self._switch_failed = False
        self._message = "No model is active yet."
        self._idle_traffic = Traffic()

    # -- what clients see ------------------------------------------------------------------

    def _default(self) -> EngineInstance | None:
        key = "" if self.pool.external else self.pool.default_id
        return self.pool.instances.get(key) if key is not None else None

    @property
    def driver(self) -> EngineDriver:
        """The routed request's engine (see ROUTED), else the default model's, else the
        configured kind (its name, `manages_models`)."""
        instance = ROUTED.get() or self._default()
        return instance.driver if instance is not None else self.pool.template

    @property
    def traffic(self) -> Traffic:
        instance = ROUTED.get() or self._default()
        return instance.traffic if instance is not None else self._idle_traffic

    @property
    def current(self) -> EngineStatus:
        """The default model's status as one immutable value, in the API's terms."""
        instance = self._default()
        status = instance.status if instance is not None else None
        with self._lock:
            switching, since, notice = self._switching, self._switch_since, self._notice
            switch_failed, message = self._switch_failed, self._message
        if switching is not None:
            target = self.pool.instances.get(switching)
            phase = target.status.phase if target is not None and target.status.phase else ""
            return EngineStatus(
                state=EngineState.LOADING,
                message=target.status.message if target is not None else message,
                loading=switching,
                loading_since=since,
                phase=phase or "queued",
                failure=notice,
            )
        if status is None:
            # Nothing serves; a switch from nothing that failed is the news (its log too).
            failed = notice is not None and switch_failed
            state = EngineState.FAILED if failed else EngineState.STOPPED
            return EngineStatus(state=state, message=message, failure=notice,
                                switch_failed=switch_failed)  # fmt: skip
        state = _ENGINE_STATE[status.state]
        if instance is not None and instance.load_queued and state != EngineState.READY:
            state = EngineState.LOADING  # the load is posted; its loop takes it next
            status = replace(status, phase=status.phase or "queued")
        serving = None
        if state == EngineState.READY:
            external = instance.served_model if instance is not None else None
            serving = external if self.pool.external else status.model_id
        if notice is not None and state == EngineState.READY:
            message = message if switch_failed else status.message
        else:
            message = status.message
        return EngineStatus(
            state=state,
            message=message,
            serving=serving,
            loading=status.model_id if state == EngineState.LOADING else None,
            loading_since=status.loading_since
            or (time.monotonic() if state == EngineState.LOADING else None),
            phase=status.phase,
            failure=notice or status.failure,
            switch_failed=switch_failed,
            restarts=status.restarts,
            restart=status.restart,
        )

    @property
    def state(self) -> EngineState:
        return self.current.state

    @property
    def restarts(self) -> int:
        return self.current.restarts

    @property
    def model(self) -> str | None:
        """The default model while it serves (None otherwise)."""
        return self.current.serving

    def status(self) -> dict[str, Any]:
        return self.current.to_api(engine=self.driver.name, active_model=self.db.active_model)

    def dismiss_failure(self) -> bool:
        """Forget the last failure (the person has read it); False if there was none."""
        had = self.current.failure is not None
        with self._lock:
            self._notice, self._switch_failed = None, False
        instance = self._default()
        if instance is not None and instance.status.failure is not None:
            instance._status = replace(instance.status, failure=None)
        return had

    def forget(self, model_id: str) -> None:
        """`model_id` was deleted: a failure about it no longer helps anyone."""
        with self._lock:
            if self._notice is not None and self._notice.model_id == model_id:
                self._notice, self._switch_failed = None, False
        if model_id != self.db.active_model:
            self.pool.unload(model_id, f"{model_id} was deleted.")

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Clean up after a killed predecessor, then load the default model (pinned)."""
        self.pool.cleanup_orphans()
        active = self.db.active_model
        if self.pool.external:
            self.pool.start_external()
            return
        if active is None:
            self._message = (
                "No model is active: switch to one (`talktuah use ORG/NAME`, or "
                "POST /api/switch-model?model_id=ORG/NAME)."
            )
        elif not self._downloaded(active):
            self._message = (
                f"The active model {active} is not downloaded: "
                f"POST /api/download-model?model_id={active}&auto=true, then switch to it."
            )
        else:
            self.pool.set_default(active)
            self.pool.ensure(active, pinned=True, keep_alive=None)

    def stop(self) -> None:
        self.pool.stop()
        self._message = "TalkTuah is shutting down."

    def unload(self, reason: str) -> None:
        """Stop serving the default model (it was deleted, say)."""
        active = self.db.active_model
        self._message = reason
        if active is not None:
            self.pool.unload(active, reason)

    def switch(self, model_id: str, *, force: bool = False) -> SwitchOutcome:
        """Make `model_id` the default model, loading it if it is not loaded.

        Asking for the default while it serves (or loads) is answered at once and loads
        nothing — clients such as the n8n example ask on every run — unless `force`. A
        model loaded on demand becomes the default at once. A restart waiting out its
        backoff does not hold anything: the load supersedes it.
        """
        model_id = ModelId(model_id)  # a route's id as it is; any other str is checked
        if self.pool.external:
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
        previous = self.db.active_model
        with self._lock:
            if self._switching is not None:
                if self._switching == model_id and not force:
                    return SwitchOutcome.ALREADY_LOADING
                raise SwitchInProgressError(
                    f"The engine is loading {self._switching}; one switch at a time. Wait "
                    "until it is done (GET /api/model-loading-status), then switch again."
                )
            existing = self.pool.instances.get(model_id)
            state = existing.status.state if existing is not None else None
            if not force and state == InstanceState.READY:
                self._switch_failed = False  # the request succeeded: an old failure is past
                if model_id != previous:
                    self._make_default(model_id, previous)
                return SwitchOutcome.ALREADY_SERVING
            if not force and state == InstanceState.LOADING and model_id == previous:
                return SwitchOutcome.ALREADY_LOADING
            self._switching, self._switch_from = model_id, previous
            self._switch_since = time.monotonic()
            self._switch_failed, self._restoring = False, False
            if self._notice is not None and self._notice.model_id == model_id:
                self._notice = None
        if previous is not None and previous != model_id:
            self.pool.set_default(previous)  # stays the default until the new one serves...
            old = self.pool.instances.get(previous)
            if old is not None:
                old.pinned = False  # ...but may make room for it
        try:
            self.pool.ensure(model_id, pinned=True, keep_alive=None, force=force)
        except NoRoom as full:
            with self._lock:
                self._switching = None
            raise SwitchInProgressError(str(full)) from full
        return SwitchOutcome.SWITCHING

    # -- the outcome of a switch -------------------------------------------------------------

    def _on_instance(self, instance: EngineInstance, status: InstanceStatus) -> None:
        """Called by the pool on every status change of every instance."""
        with self._lock:
            switching = self._switching
            if switching is None or instance.model_id != switching:
                return
            if status.state == InstanceState.READY:
                self._finish_switch(instance)
            elif status.state == InstanceState.FAILED:
                self._fail_switch(instance, status)
            elif status.state in (InstanceState.UNLOADING, InstanceState.STOPPED):
                self._switching = None  # unloaded by someone while the switch waited

    def _finish_switch(self, instance: EngineInstance) -> None:
        model_id, previous = instance.model_id, self._switch_from
        self._switching = None
        if self._restoring:
            failed = self._notice.model_id if self._notice else "the model"
            cause = self._notice.cause if self._notice else ""
            self._message = f"{model_id} was restored and serves; {failed} failed to load: {cause}"
            self._switch_failed = True
            self.pool.set_default(model_id)
            return
        self._notice, self._switch_failed = None, False
        self._make_default(model_id, previous)

    def _make_default(self, model_id: str, previous: str | None) -> None:
        self.db.active_model = model_id
        self.pool.set_default(model_id)
        if previous is not None and previous != model_id:
            # The switch's contract since the single-engine days: the old default stops.
            self.pool.unload(previous, f"switched to {model_id}.")

    def _fail_switch(self, instance: EngineInstance, status: InstanceStatus) -> None:
        previous = self._switch_from
        failure = status.failure
        if failure is None or self._restoring:
            self._switching = None
            return
        rollback = previous is not None and previous != instance.model_id
        if not rollback:
            self._switching = None  # a forced reload of the default failed: it is its status
            if previous is None:  # nothing served before: keep the failure to show it
                self._notice = replace(failure, kind=FailureKind.SWITCH)
                self._switch_failed = True
                self._message = f"{instance.model_id} failed to load: {failure.cause}"
            return
        self._notice = replace(failure, kind=FailureKind.SWITCH)
        self._switch_failed = True
        assert previous is not None
        old = self.pool.instances.get(previous)
        if old is not None and old.status.state in (InstanceState.READY, InstanceState.LOADING):
            old.pinned = True
            self._switching = None
            self._message = (
                f"{previous} still serves; {instance.model_id} failed to load: {failure.cause}"
            )
            return
        self._switching, self._restoring = previous, True
        instance.pinned = False  # the failed model holds no room the previous one needs
        self.pool.set_default(previous)
        try:  # it had to make room for the failed model: load it again
            self.pool.ensure(previous, pinned=True, keep_alive=None)
        except NoRoom as full:
            self._switching = None
            self._message = f"Restoring {previous} failed: {full}"

    def _downloaded(self, model_id: str) -> bool:
        try:
            return self.store.get(model_id).complete
        except ModelNotFoundError:
            return False

    async def wait_ready(self, timeout: float) -> bool:
        """For callers that wait for the default model while it loads (bounded)."""
        instance = self._default()
        if instance is None:
            return False
        status = await instance.wait_ready(timeout)
        return status.state == InstanceState.READY
