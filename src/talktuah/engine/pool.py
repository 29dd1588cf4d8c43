"""The engine pool: every loaded model is one `EngineInstance`, and requests find theirs here.

Routing is one dict lookup on the hot path (`route`): the table `_routes` maps what
clients send as `model` (the id, and for the default model also nothing and "default") to
the ready instances; it is rebuilt whole, under `_lock`, whenever an instance changes state,
and read without a lock. Everything else — loading on demand, waiting for a load, making
room under the limits, queueing when nothing can go — is the slow path, taken only when the
lookup misses.

One instance per model: concurrent first requests for a model find the instance the first
one created (`ensure` runs under `_lock`) and wait on that one load.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from ..config import Settings
from ..errors import (
    EngineLoadingError,
    EngineStartError,
    EngineUnavailableError,
    InvalidParameterError,
    ModelLoadFailedError,
    ModelNotFoundError,
    ModelNotServedError,
    PoolFullError,
    TalkTuahError,
)
from ..host_memory import gpu_memory_totals
from ..metrics import Metrics
from ..model_id import ModelId
from ..store import ModelStore
from .base import EngineDriver, SubprocessDriver
from .budget import (
    NoRoom,
    Resident,
    parse_keep_alive,
    parse_memory_budget,
    plan_room,
)
from .drivers import make_driver
from .instance import Clock, EngineInstance, Load, Stop, Unload
from .lifecycle import InstanceState, InstanceStatus
from .llamacpp import find_gguf
from .memory import estimate_bytes, memory_kind, total_bytes
from .process import ManagedProcess

logger = logging.getLogger(__name__)

#: How often a request queued for room looks again (the pool has no waiting list to
#: wake: room appears when a request finishes or an instance stops, both cheap to poll).
ROOM_POLL_SECONDS = 0.05
DEFAULT_ALIASES = (None, "", "default")

Listener = Callable[[EngineInstance, InstanceStatus], None]


def process_name(slot: int) -> str:
    """The pidfile and log name of the instance in `slot`: the first keeps `engine` (the
    single engine's name before the pool), so its files stay where people look."""
    return "engine" if slot == 1 else f"engine-{slot}"


def make_instance_driver(settings: Settings, model_id: str, slot: int) -> EngineDriver:
    """A driver of the kind `model_id` needs (auto: llama.cpp for GGUF, else transformers),
    with a pidfile, log and container name of its slot and, past the first, a free port."""
    engine = settings.engine
    update: dict[str, Any] = {}
    if engine == "auto":
        from .llamacpp import is_gguf_model

        engine = "llamacpp" if is_gguf_model(settings.models_dir, model_id) else "transformers"
        if engine == "llamacpp":  # TALKTUAH_ENGINE_EXECUTABLE means transformers under auto
            update["engine_executable"] = None
    update["engine"] = engine
    if slot > 1:
        update["engine_port"] = 0
        update["docker_container_name"] = f"{settings.docker_container_name}-{slot}"
    driver = make_driver(settings.model_copy(update=update))
    if isinstance(driver, SubprocessDriver):
        driver.process = ManagedProcess(settings.engine_dir, process_name(slot))
    return driver


class EnginePool:
    def __init__(
        self,
        settings: Settings,
        store: ModelStore,
        metrics: Metrics,
        *,
        driver_factory: Callable[[Settings, str, int], EngineDriver] = make_instance_driver,
        clock: Clock = time.monotonic,
    ) -> None:
        self.settings = settings
        self.clock = clock  # keep-alive and restart backoff (instance.Clock)
        self.store = store
        self.metrics = metrics
        self._driver_factory = driver_factory
        self.template = make_driver(settings)  # names the engine before anything loads
        self.external = not self.template.manages_models
        self.keep_alive = parse_keep_alive(settings.keep_alive)
        self.memory_kind = memory_kind(settings.engine)
        self._gpu_totals = gpu_memory_totals() if self.memory_kind == "gpu" else None
        self.budget = self._budget(settings.memory_budget)
        self.default_id: str | None = None
        self.listeners: list[Listener] = []
        self._lock = threading.Lock()
        self.instances: dict[str, EngineInstance] = {}
        self._leaving: set[EngineInstance] = set()  # unloading: holding a slot and memory
        self._routes: dict[str | None, EngineInstance] = {}
        self._measured: dict[str, int] = {}  # bytes a model took when last loaded
        self._turns: dict[str, _Turn] = {}  # models waiting for room, first asked first
        self._drain: frozenset[str] = frozenset()  # what the head of `_turns` waits for
        self._load_waiters: dict[str, int] = {}  # requests waiting for a model's load

    # -- the hot path ----------------------------------------------------------------------

    async def route(self, model: object, keep_alive: object = None) -> EngineInstance:
        """The ready instance for a request's `model`, loading it on demand (bounded wait)."""
        if keep_alive is None and (model is None or type(model) is str):
            instance = self._routes.get(model)
            if instance is not None:
                return instance
        return await self._route_slow(model, keep_alive)

    # -- the slow path ---------------------------------------------------------------------

    async def _route_slow(self, model: object, keep_alive: object) -> EngineInstance:
        if self.external:
            return self._external_route()
        model_id = self._resolve(model)
        seconds = self._keep_alive(keep_alive)
        started = time.monotonic()
        deadline = started + self.settings.proxy_load_wait
        waited = tried = False
        admitted = False  # waited for this model's load: served even while it drains
        turn: _Turn | None = None  # its place in the queue for room
        try:
            while True:
                instance = self.instances.get(model_id)
                state = instance.status.state if instance is not None else InstanceState.STOPPED
                if turn is not None and turn.served:
                    admitted = True
                if (
                    instance is not None
                    and state == InstanceState.READY
                    and not instance.evicting
                    and (admitted or model_id not in self._drain)
                ):
                    if keep_alive is not None and model_id != self.default_id:
                        instance.keep_alive = seconds
                    if waited:
                        self.metrics.load_wait.labels(model_id).observe(time.monotonic() - started)
                    return instance
                if instance is not None and instance.evicting:
                    if time.monotonic() >= deadline:
                        raise PoolFullError(
                            self._behind(model_id),
                            retry_after=self._retry_after(),
                            model_id=model_id,
                        )
                    waited = True
                    await asyncio.sleep(ROOM_POLL_SECONDS)  # gone in a moment; then load again
                    continue
                if instance is not None and instance.loading:
                    waited = tried = admitted = True
                    await self._wait_load(instance, deadline)
                    if instance.loading:
                        raise EngineLoadingError(
                            f"The engine is still loading {model_id}; retry shortly (GET "
                            "/api/ps or /api/model-loading-status shows progress).",
                            retry_after=self._retry_after(),
                            model_id=model_id,
                        )
                    continue
                if instance is not None and state == InstanceState.FAILED and tried:
                    raise self._load_failed(instance.status)
                if (
                    model_id == self.default_id
                    and instance is not None
                    and not self._may_load(instance)
                ):
                    raise self._nothing_serves(instance.status)
                self._check_loadable(model_id)
                head = next(iter(self._turns), None)
                full: NoRoom | None = None
                if head in (None, model_id) or not self._drain:
                    try:
                        self.ensure(model_id)  # the request's keep_alive applies once routed
                    except NoRoom as exc:
                        full = exc
                    else:
                        self._served(model_id)
                        waited = tried = admitted = True
                        continue
                if time.monotonic() >= deadline:
                    message = str(full) if full else self._behind(model_id)
                    raise PoolFullError(
                        message, retry_after=self._retry_after(), model_id=model_id
                    ) from full
                turn = turn or self._queue(model_id)
                if full is not None and next(iter(self._turns)) == model_id:
                    self._drain_for(full)
                waited = True
                await asyncio.sleep(ROOM_POLL_SECONDS)
        finally:
            if turn is not None:
                self._leave(model_id, turn)

    # -- swap-aware queueing -------------------------------------------------------------------
    #
    # When the limits leave no room, requests queue by model, in the order their models
    # first asked (`_turns`). Only the model at the head tries to make room; the models it
    # waits for (busy: requests in flight or waiting for their load) are drained: taken out
    # of the routing table, so that new requests for them queue behind it instead of
    # keeping them busy for ever. A model's turn serves every request waiting for it at
    # once (its batch: those queued, and those that arrive while it loads), so A B A B
    # becomes A A B B: one swap per batch, not per request. Fairness: a request waits for
    # at most one batch of each model queued before it, i.e. no more swaps than there are
    # models ahead of it in the turns.

    async def _wait_load(self, instance: EngineInstance, deadline: float) -> None:
        """Wait for `instance` to load, counted so that it is not evicted between its
        ready and the moment its waiters have entered (they wake within a poll)."""
        model_id = instance.model_id
        self._load_waiters[model_id] = self._load_waiters.get(model_id, 0) + 1
        try:
            await instance.wait_ready(max(0.0, deadline - time.monotonic()))
        finally:
            left = self._load_waiters[model_id] - 1
            if left:
                self._load_waiters[model_id] = left
            else:
                del self._load_waiters[model_id]

    def _queue(self, model_id: str) -> _Turn:
        turn = self._turns.get(model_id)
        if turn is None:
            turn = self._turns[model_id] = _Turn()
        turn.waiting += 1
        return turn

    def _leave(self, model_id: str, turn: _Turn) -> None:
        turn.waiting -= 1
        if turn.waiting == 0 and self._turns.get(model_id) is turn:
            head = next(iter(self._turns)) == model_id
            del self._turns[model_id]
            if head:
                self._set_drain(set())

    def _served(self, model_id: str) -> None:
        """`model_id` got its room: its queued requests are its batch; the next model's
        turn begins."""
        turn = self._turns.pop(model_id, None)
        if turn is not None:
            turn.served = True
            self._set_drain(set())

    def _drain_for(self, full: NoRoom) -> None:
        self._set_drain(set(full.busy))

    def _set_drain(self, models: set[str]) -> None:
        if models == self._drain:
            return
        with self._lock:
            self._drain = frozenset(models)
            self._rebuild_routes()

    def _behind(self, model_id: str) -> str:
        ahead = [m for m in self._turns if m != model_id]
        return (
            f"No room for {model_id} yet: it waits its turn behind {', '.join(ahead) or 'none'} "
            f"(TALKTUAH_MAX_LOADED_MODELS={self.settings.max_loaded_models}). Retry shortly, "
            "or raise the limits."
        )

    def _external_route(self) -> EngineInstance:
        instance = self.instances.get("")
        if instance is None or instance.status.state != InstanceState.READY:
            status = instance.status if instance else InstanceStatus("")
            raise EngineUnavailableError(
                f"No engine is serving ({_reported(status.state)}): {status.message}"
            )
        return instance

    def _resolve(self, model: object) -> str:
        if model in DEFAULT_ALIASES:
            if self.default_id is None:
                raise EngineUnavailableError(
                    "No engine is serving (stopped): no default model is set. Start one with "
                    "POST /api/switch-model?model_id=..."
                )
            return self.default_id
        if not isinstance(model, str):
            raise ModelNotServedError(f"'model' must be a model id string, not {model!r}.")
        try:
            return ModelId(model)  # checked here, where a body's `model` comes in
        except TalkTuahError as exc:
            raise ModelNotServedError(
                f"Model {model!r} is not a model id TalkTuah can serve ({exc}); list them "
                "with GET /v1/models."
            ) from exc

    def _keep_alive(self, value: object) -> float | None:
        if value is None:
            return self.keep_alive
        try:
            return parse_keep_alive(value)
        except ValueError as exc:
            raise InvalidParameterError(f"{exc}.") from exc

    def _may_load(self, instance: EngineInstance) -> bool:
        """The default model is loaded on demand only if it is not failing: its own restarts
        (or a switch) bring it back, not every request."""
        return instance.status.state == InstanceState.STOPPED

    def _check_loadable(self, model_id: str) -> None:
        if model_id != self.default_id and not self.settings.load_on_demand:
            raise ModelNotServedError(
                f"Model {model_id!r} is not loaded and TALKTUAH_LOAD_ON_DEMAND is off: load it "
                f"with POST /api/load-model?model_id={model_id} (`talktuah load {model_id}`), "
                f"or switch with POST /api/switch-model?model_id={model_id}.",
                model_id=model_id,
            )
        try:
            complete = self.store.get(model_id).complete
        except ModelNotFoundError:
            complete = False
        if not complete:
            raise ModelNotServedError(
                f"Model {model_id!r} is not downloaded; TalkTuah never pulls on its own. "
                f"Pull it with `talktuah pull {model_id}` (or POST "
                f"/api/download-model?model_id={model_id}), then ask again.",
                model_id=model_id,
            )

    def _retry_after(self) -> int:
        return max(1, math.ceil(self.settings.engine_health_interval * 2))

    def _load_failed(self, status: InstanceStatus) -> ModelLoadFailedError:
        failure = status.failure
        tail = "\n".join(failure.log_tail[-10:]) if failure else ""
        return ModelLoadFailedError(
            f"{status.model_id} failed to load: {failure.cause if failure else status.message}"
            + (f"\nThe engine's log ends:\n{tail}\n" if tail else " ")
            + f"Fix the cause, then ask again (GET /api/ps shows it; the whole log is "
            f"{self.settings.engine_dir}/).",
            model_id=status.model_id,
        )

    def _nothing_serves(self, status: InstanceStatus) -> EngineUnavailableError:
        return EngineUnavailableError(
            f"No engine is serving ({_reported(status.state)}): {status.message} "
            "Start one with POST /api/switch-model?model_id=..."
        )

    # -- loading and unloading ---------------------------------------------------------------

    def ensure(
        self,
        model_id: str,
        *,
        pinned: bool | None = None,
        keep_alive: float | None | Any = ...,
        force: bool = False,
    ) -> EngineInstance:
        """The instance for `model_id`, loading it if it is not loaded or loading; makes room
        under the limits first (raises NoRoom when nothing can go)."""
        with self._lock:
            instance = self.instances.get(model_id)
            state = instance.status.state if instance is not None else None
            if instance is not None and (instance.loading or state == InstanceState.READY):
                self._configure(instance, pinned, keep_alive)
                if force:
                    self._count_load(model_id)
                    instance.post(Load(force=True))
                return instance
            residents = [
                self._resident(other)
                for other in self.instances.values()
                if other is not instance and _takes_room(other)
            ]
            estimate = self.estimate(model_id)
            victims = plan_room(
                residents,
                estimate,
                max_loaded=self.settings.max_loaded_models,
                budget=self.budget,
            )
            reason = self._eviction_reason(residents, estimate)
            leaving = []
            for victim in victims:
                gone = self.instances[victim.model_id]
                leaving.append(gone)
                self._drop_route(gone)
                gone.evicting = True
                gone.post(Unload(f"evicted to make room for {model_id} ({reason}).", reason))
            if instance is None:
                slot = self._free_slot()
                instance = EngineInstance(
                    model_id,
                    self._driver_factory(self.settings, model_id, slot),
                    self.settings,
                    slot=slot,
                    estimate_bytes=estimate,
                    keep_alive=self.keep_alive,
                    on_change=self._on_change,
                    clock=self.clock,
                )
                self.instances[model_id] = instance
            self._configure(instance, pinned, keep_alive)
            self._count_load(model_id)
        instance.post(Load(force=force, after=tuple(leaving)))
        return instance

    def unload(self, model_id: str, reason: str) -> bool:
        """Stop `model_id`'s engine (whatever it is doing); False if it is not loaded."""
        with self._lock:
            instance = self.instances.get(model_id)
            if instance is None:
                return False
            self._drop_route(instance)
        instance.post(Unload(reason))
        return True

    def start_external(self) -> EngineInstance:
        """Attach to the engine TalkTuah does not run (TALKTUAH_ENGINE=external)."""
        with self._lock:
            instance = EngineInstance(
                "",
                self.template,
                self.settings,
                pinned=True,
                on_change=self._on_change,
                clock=self.clock,
            )
            self.instances[""] = instance
        instance.post(Load())
        return instance

    def cleanup_orphans(self) -> None:
        """End every engine a killed TalkTuah left running: one pidfile per slot (and the
        containers of this home, which the docker driver finds by label)."""
        self.template.cleanup_orphans()
        for pidfile in sorted(self.settings.engine_dir.glob("engine*.pid")):
            ManagedProcess(self.settings.engine_dir, pidfile.stem).cleanup_orphan(
                self.settings.engine_stop_timeout
            )

    def stop(self) -> None:
        with self._lock:
            everyone = list(self.instances.values()) + list(self._leaving)
        for instance in everyone:
            instance.post(Stop())
        for instance in everyone:
            instance.join(self.settings.engine_stop_timeout + 5)

    def estimate(self, model_id: str) -> int:
        """Bytes `model_id` will hold: as measured last time, else estimated from its files
        and its engine (memory.py)."""
        if model_id in self._measured:
            return self._measured[model_id]
        try:
            model = self.store.get(model_id)
        except ModelNotFoundError:
            return estimate_bytes(self.settings, self.settings.engine, weights_bytes=0)
        engine = self.settings.engine if self.settings.engine != "auto" else model.engine
        gguf_file = None
        if engine == "llamacpp":
            try:
                gguf_file = find_gguf(self.settings.models_dir, model_id).path
            except EngineStartError:
                pass  # the load will fail and say why; the estimate goes without a header
        return estimate_bytes(
            self.settings, engine, weights_bytes=model.size_bytes, gguf_file=gguf_file,
            gpu_totals=self._gpu_totals,
        )  # fmt: skip

    def _budget(self, value: str) -> int | None:
        """TALKTUAH_MEMORY_BUDGET in bytes, a percentage of the memory this pool's engine
        uses (RAM, or the GPUs' for vLLM); None without one or when that memory is unknown."""
        total = total_bytes(self.memory_kind)
        budget = parse_memory_budget(value, total)
        if budget is None and total is None and value.strip().endswith("%"):
            logger.warning(
                "TALKTUAH_MEMORY_BUDGET=%s: the %s's total memory could not be read, so no "
                "budget applies (give it in bytes); TALKTUAH_MAX_LOADED_MODELS still does",
                value, "GPUs" if self.memory_kind == "gpu" else "machine",
            )  # fmt: skip
        return budget

    def _configure(self, instance: EngineInstance, pinned: bool | None, keep_alive: Any) -> None:
        if pinned is not None:
            instance.pinned = pinned
        if keep_alive is not ...:
            instance.keep_alive = keep_alive

    def _count_load(self, model_id: str) -> None:
        self.metrics.model_loads.labels(model_id).inc()

    def _resident(self, instance: EngineInstance) -> Resident:
        return Resident(
            instance.model_id,
            instance.footprint,
            instance.traffic.last_used,
            pinned=instance.pinned,
            busy=not instance.traffic.idle
            or instance.loading
            or instance.model_id in self._load_waiters,
        )

    def _eviction_reason(self, residents: list[Resident], estimate: int) -> str:
        if len(residents) + 1 > self.settings.max_loaded_models:
            return "max_loaded_models"
        return "memory_budget"

    def _free_slot(self) -> int:
        taken = {i.slot for i in self.instances.values()} | {i.slot for i in self._leaving}
        return next(slot for slot in range(1, len(taken) + 2) if slot not in taken)

    # -- keeping the routing table ------------------------------------------------------------

    def _on_change(self, instance: EngineInstance, status: InstanceStatus) -> None:
        with self._lock:
            current = self.instances.get(instance.model_id) is instance
            if status.state == InstanceState.UNLOADING and current:
                del self.instances[instance.model_id]
                self._leaving.add(instance)
            elif status.state == InstanceState.STOPPED:
                self._leaving.discard(instance)
                if current:
                    del self.instances[instance.model_id]
                if instance.evicted:
                    self.metrics.model_evictions.labels(instance.model_id, instance.evicted).inc()
            if status.state == InstanceState.READY and instance.measured_bytes:
                self._measured[instance.model_id] = instance.measured_bytes
            self._rebuild_routes()
        for listener in list(self.listeners):
            listener(instance, status)

    def _drop_route(self, instance: EngineInstance) -> None:
        self._routes = {k: v for k, v in self._routes.items() if v is not instance}

    def _rebuild_routes(self) -> None:
        routes: dict[str | None, EngineInstance] = {}
        for model_id, instance in self.instances.items():
            if instance.status.state != InstanceState.READY:
                continue
            if model_id in self._drain or instance.evicting:
                continue  # new requests for it queue behind the model waiting for room
            if self.external:
                routes.update(dict.fromkeys(DEFAULT_ALIASES, instance))
                if instance.served_model:
                    routes[instance.served_model] = instance
                continue
            routes[model_id] = instance
            if model_id == self.default_id:
                routes.update(dict.fromkeys(DEFAULT_ALIASES, instance))
        self._routes = routes

    def set_default(self, model_id: str | None) -> None:
        """The model for requests with no `model`: pinned; the previous one no longer is."""
        with self._lock:
            previous = self.instances.get(self.default_id or "")
            if previous is not None and self.default_id != model_id:
                previous.pinned = False
            self.default_id = model_id
            current = self.instances.get(model_id or "")
            if current is not None:
                current.pinned = True
            self._rebuild_routes()

    # -- reading ---------------------------------------------------------------------------

    def loaded(self) -> int:
        return sum(
            1
            for i in list(self.instances.values())
            if i.status.state in (InstanceState.READY, InstanceState.LOADING)
        )

    def model_list(self) -> list[dict[str, Any]]:
        """`/v1/models`: every downloaded model, the default first, then those loaded."""
        states = {i.model_id: i.status.state for i in list(self.instances.values())}
        ids = [m for m in self.store.model_ids() if self._complete(m)]

        def order(model_id: str) -> tuple[int, str]:
            rank = 0 if model_id == self.default_id else 1 if model_id in states else 2
            return rank, model_id

        return [
            {
                "id": model_id,
                "object": "model",
                "created": 0,
                "owned_by": "talktuah",
                "loaded": states.get(model_id) == InstanceState.READY,
                "state": str(states.get(model_id, "not_loaded")),
            }
            for model_id in sorted(ids, key=order)
        ]

    def _complete(self, model_id: str) -> bool:
        try:
            return self.store.get(model_id).complete
        except ModelNotFoundError:
            return False

    def ps(self) -> list[dict[str, Any]]:
        """`GET /api/ps`: every instance, in Ollama's shape plus our state and failure."""
        now_wall, now = time.time(), self.clock()
        rows = []
        for instance in sorted(list(self.instances.values()), key=lambda i: i.model_id):
            status = instance.status
            try:
                size = self.store.get(instance.model_id).size_bytes
            except ModelNotFoundError:
                size = 0
            expires = instance.expires_at()
            if status.state == InstanceState.READY:
                instance.memory_bytes()
            rows.append(
                {
                    "model": instance.served_model or instance.model_id,
                    "state": str(status.state),
                    "engine": instance.driver.name,
                    "size_bytes": size,
                    "memory_bytes": instance.measured_bytes,
                    "loaded_at": _iso(status.loaded_at),
                    "last_used_at": _iso(now_wall - (now - instance.traffic.last_used)),
                    "expires_at": _iso(now_wall + (expires - now)) if expires else None,
                    "pinned": instance.pinned,
                    "in_flight": instance.traffic.in_flight,
                    "message": status.message,
                    "error": status.failure.to_api() if status.failure else None,
                }
            )
        return rows


def _takes_room(instance: EngineInstance) -> bool:
    """Whether `instance` counts against the limits: it holds a process, or is about to
    (a load queued but not begun yet, a restart pending): two first requests for two
    models a moment apart must not both find room for one."""
    status = instance.status
    if status.state == InstanceState.FAILED:
        return False  # its process is gone (a load that failed is over, whatever is queued)
    return status.holds_process or instance.loading or status.state == InstanceState.RESTARTING


class _Turn:
    """One model's place in the queue for room: how many requests wait in it, and whether
    its room was made (its waiters are then its batch, served even while it drains)."""

    __slots__ = ("waiting", "served")

    def __init__(self) -> None:
        self.waiting = 0
        self.served = False


def _reported(state: InstanceState) -> str:
    """The engine states the API always had: a restart pending is `failed`."""
    if state == InstanceState.RESTARTING:
        return "failed"
    if state == InstanceState.UNLOADING:
        return "stopped"
    return str(state)


def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")
