"""One engine instance: one model, its own driver (process, loopback port, pidfile), and one
command loop that alone changes its status.

Commands (`Load`, `Unload`, `Restart`, `Stop`) go into a queue; the loop takes them one at
a time and, between them, watches the process: a dead engine is failed and restarted with
backoff, an idle one past its keep-alive is unloaded. Every change is a transition of the
immutable `InstanceStatus` (lifecycle.py), replaced whole under `_lock`, and reported to
the pool (`on_change`), which keeps its routing table from it.

A load is polled, not awaited: an `Unload` or `Stop` posted meanwhile interrupts it, so a
user never waits out a ten-minute load to unload a model. The proxy waits for a loading
instance with `wait_ready` on the event loop (bounded), never on a thread of its own.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import httpx

from ..config import Settings
from ..engine_client import shared_ssl_context
from ..errors import EngineStartError
from .base import EngineDriver
from .diagnosis import diagnose
from .lifecycle import InstanceState, InstanceStatus, plan_restart
from .memory import measure_bytes, memory_kind
from .status import Failure, FailureKind

logger = logging.getLogger(__name__)

LOG_TAIL_LINES = 40
#: How often a loading engine is asked whether it serves yet (two loopback GETs, refused
#: at once while it does not listen yet): a load waits half of this on average after the
#: engine is ready (bench/switch.py).
LOAD_POLL_SECONDS = 0.05


@dataclass(frozen=True)
class Load:
    """Load the model (a restart waiting out its backoff is superseded); `force` reloads
    a ready one."""

    force: bool = False
    #: Instances being evicted for this load: their memory is free before it starts.
    after: tuple[EngineInstance, ...] = ()


@dataclass(frozen=True)
class Unload:
    """Stop the engine and end the instance. `if_idle`: only if nothing is in flight and
    its keep-alive has run out by then (an expiry or eviction decided a moment ago)."""

    reason: str
    evicted: str | None = None  # the metric's reason when this is an eviction
    if_idle: bool = False


@dataclass(frozen=True)
class Restart:
    """Restart now (the backoff's due time has come)."""


@dataclass(frozen=True)
class Stop:
    """TalkTuah shuts down: stop the engine and end the loop."""

    reason: str = "TalkTuah is shutting down."


Command = Load | Unload | Restart | Stop


class LoadFailed(Exception):
    """The engine did not come up serving the model; the message says why."""


#: Seconds, monotonic: what keep-alive expiry and restart backoff are measured on (tests give
#: one they advance, instead of sleeping until a keep-alive runs out).
Clock = Callable[[], float]


class Traffic:
    """How many requests TalkTuah has in flight to one instance, and when it last had one.

    The proxy counts on the event loop; the instance reads from its own thread: one writer
    and an int read, so no lock. `on_idle` runs when the count drops to zero (keep_alive=0
    unloads then): a queue put, no thread or task per request.
    """

    def __init__(
        self, on_idle: Callable[[], None] | None = None, clock: Clock = time.monotonic
    ) -> None:
        self.in_flight = 0
        self.clock = clock
        self.last_used = clock()
        self._on_idle = on_idle

    def enter(self) -> None:
        self.in_flight += 1

    def leave(self) -> None:
        self.in_flight -= 1
        self.last_used = self.clock()
        if self.in_flight == 0 and self._on_idle is not None:
            self._on_idle()

    @property
    def idle(self) -> bool:
        return self.in_flight == 0


class EngineInstance:
    def __init__(
        self,
        model_id: str,
        driver: EngineDriver,
        settings: Settings,
        *,
        slot: int = 1,
        pinned: bool = False,
        keep_alive: float | None = None,
        estimate_bytes: int = 0,
        on_change: Callable[[EngineInstance, InstanceStatus], None] | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self.model_id = model_id
        self.driver = driver
        self.settings = settings
        self.slot = slot
        self.pinned = pinned
        #: Seconds idle before it is unloaded; None: never (-1), 0: after each request.
        self.keep_alive = keep_alive
        self.estimate_bytes = estimate_bytes
        self.measured_bytes: int | None = None
        self.served_model: str | None = None  # an external engine says what it serves
        self.evicted: str | None = None  # why it was unloaded, when it was evicted
        #: An eviction is posted and not yet carried out: the pool routes nothing to it
        #: meanwhile (a request let in would call the eviction off, leaving one too many).
        self.evicting = False
        self.load_queued = False
        self.clock = clock
        self.traffic = Traffic(on_idle=self._idle, clock=clock)
        self._on_change = on_change
        self._status = InstanceStatus(model_id)
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._commands: queue.SimpleQueue[Command] = queue.SimpleQueue()
        self._interrupt = threading.Event()
        self._http = httpx.Client(timeout=5, verify=shared_ssl_context())  # one CA load
        self._thread = threading.Thread(target=self._loop, name=f"engine-{slot}", daemon=True)
        self._thread.start()

    # -- what others read and ask ----------------------------------------------------------

    @property
    def status(self) -> InstanceStatus:
        return self._status

    @property
    def base_url(self) -> str:
        return self.driver.base_url

    @property
    def served_name(self) -> str:
        """The `model` value the engine expects in requests."""
        if not self.driver.manages_models:
            return self.served_model or ""
        return self.driver.served_name(self.model_id)

    @property
    def footprint(self) -> int:
        """Bytes it holds (measured once loaded), else what it is expected to hold."""
        return self.measured_bytes or self.estimate_bytes

    def expires_at(self) -> float | None:
        """When idle unloading is due (on its clock); None while pinned, busy or forever."""
        keep_alive = self.keep_alive  # read once: a request or a switch may change it now
        if self.pinned or keep_alive is None or not self.traffic.idle:
            return None
        return self.traffic.last_used + keep_alive

    def post(self, command: Command) -> None:
        if isinstance(command, (Unload, Stop)) and not (
            isinstance(command, Unload) and command.if_idle
        ):
            self._interrupt.set()  # a load under way gives up at its next poll
        if isinstance(command, Load):
            self.load_queued = True
        self._commands.put(command)

    @property
    def loading(self) -> bool:
        """Loading, or a load is queued and about to begin: wait for it, load nothing."""
        return self.load_queued or self._status.state == InstanceState.LOADING

    def wait_settled(self, timeout: float) -> InstanceStatus:
        """Block (a thread, not the event loop) until it is not loading, or `timeout`."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while self.loading:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._changed.wait(left)
            return self._status

    async def wait_ready(self, timeout: float) -> InstanceStatus:
        """For the proxy: wait without blocking the loop while it loads (bounded)."""
        deadline = time.monotonic() + timeout
        while self.loading and time.monotonic() < deadline:
            await asyncio.sleep(LOAD_POLL_SECONDS)
        return self._status

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def memory_bytes(self) -> int | None:
        """What the engine's processes hold now, in the memory its budget counts (RAM, or GPU
        for vLLM: memory.py); None when it runs elsewhere or nothing is seen."""
        process = getattr(self.driver, "process", None)
        pid = getattr(process, "pid", None)
        if pid is None:
            return None
        measured = measure_bytes(memory_kind(self.driver.name), pid)
        if measured:  # the most it has held: what it will need again (KV pages fill lazily)
            self.measured_bytes = max(measured, self.measured_bytes or 0)
        return measured or None

    # -- the loop ----------------------------------------------------------------------------

    def _set(self, status: InstanceStatus) -> None:
        with self._changed:
            self._status = status
            self._changed.notify_all()
        if self._on_change is not None:
            try:
                self._on_change(self, status)
            except Exception:  # the loop must outlive a listener's bug
                logger.exception("engine status listener failed")

    def _loop(self) -> None:
        while True:
            try:
                command = self._commands.get(timeout=self._next_tick())
            except queue.Empty:
                command = None
            except Exception:  # the loop must outlive a bug in working out its next tick
                logger.exception("engine instance %s: next tick failed", self.model_id)
                time.sleep(self.settings.engine_health_interval)
                command = None
            try:
                if self._tick() if command is None else self._handle(command):
                    break
            except Exception:  # one bad step must not leave the model unmanaged
                logger.exception("engine instance %s: step failed", self.model_id)
        self._http.close()

    def _handle(self, command: Command) -> bool:
        """Carry out one command; True when the instance has ended."""
        state = self._status.state
        if isinstance(command, Stop):
            self._unload(command.reason)
            return True
        if isinstance(command, Unload):
            if command.if_idle and not self._expired(after_request=True):
                return False
            if command.evicted and not self.traffic.idle:
                self.evicting = False
                return False  # a request got in since the eviction was decided
            self._unload(command.reason, command.evicted)
            return True
        self._interrupt.clear()
        try:
            return self._load_command(command, state)
        finally:
            self.load_queued = False

    def _load_command(self, command: Load | Restart, state: InstanceState) -> bool:
        if not self.driver.manages_models:
            if state != InstanceState.READY:
                self._attach()
            return False
        if isinstance(command, Restart):
            if state == InstanceState.RESTARTING:
                self._load(restart=True)
            return False
        if state == InstanceState.READY and not command.force:
            return False
        for leaving in command.after:
            leaving.join(self.settings.engine_stop_timeout + 5)
        self._load(restart=False)
        return False

    def _next_tick(self) -> float:
        interval = self.settings.engine_health_interval
        now = self.clock()
        pending = self._status.restart
        if pending is not None:
            interval = min(interval, max(0.0, pending.due - now))
        expires = self.expires_at()
        if expires is not None and self.keep_alive and self._status.state == InstanceState.READY:
            interval = min(interval, max(0.01, expires - now))
        return interval

    def _expired(self, *, after_request: bool = False) -> bool:
        """Whether its keep-alive has run out; keep_alive 0 runs out only as a request ends
        (never between its load and its request)."""
        if self.keep_alive == 0 and not after_request:
            return False
        expires = self.expires_at()
        return expires is not None and self.clock() >= expires

    def _idle(self) -> None:
        if self.keep_alive == 0 and not self.pinned:
            self.post(Unload("keep_alive 0: unloaded after the request.", "idle", if_idle=True))

    def _tick(self) -> bool:
        """Watch between commands; True when the instance has ended (idle unload)."""
        status = self._status
        if not self.driver.manages_models:
            self._watch_external()
            return False
        if status.state == InstanceState.RESTARTING and status.restart is not None:
            if self.clock() >= status.restart.due:
                self._load(restart=True)
            return False
        if status.state != InstanceState.READY:
            return False
        if not self.driver.running():
            failure = self._failure("the engine process died", FailureKind.CRASH)
            self._set(
                status.failed(failure, f"The engine serving {self.model_id} died unexpectedly.")
            )
            self._schedule_restart()
        elif self._expired():
            idle = self.keep_alive or 0
            self._unload(f"Unloaded after {idle:g} s idle (keep_alive).", evicted="idle")
            return True
        return False

    # -- transitions with side effects -------------------------------------------------------

    def _failure(self, reason: str, kind: FailureKind) -> Failure:
        """What went wrong, with the engine's log read now (before the engine is stopped)."""
        tail = self.driver.log_tail(LOG_TAIL_LINES)
        found = diagnose(tail, reason, engine=self.driver.name, model_id=self.model_id)
        return Failure(self.model_id, reason, tuple(tail), found.cause, found.hint, kind)

    def _load(self, *, restart: bool) -> None:
        current = self._status
        attempt = current.restart.attempt if current.restart else current.restarts
        self._set(current.loading(f"Loading {self.model_id}.", restart=restart))
        try:
            self._start_and_wait()
        except LoadFailed as exc:
            kind = FailureKind.RESTART if restart else FailureKind.LOAD
            failure = self._failure(str(exc), kind)
            self.driver.stop(idle=True)
            if not self._interrupt.is_set():
                logger.error("engine failed to load %s: %s", self.model_id, exc)
            what = f"{self.model_id} failed to load"
            if restart:
                what = f"Restarting {self.model_id} failed"
            self._set(self._status.failed(failure, f"{what}: {failure.cause}."))
            if restart:
                self._schedule_restart()
            return
        self.memory_bytes()
        message = (
            f"{self.model_id} is serving again after a restart ({attempt} so far)."
            if restart
            else f"{self.model_id} is loaded and serving."
        )
        self.traffic.last_used = self.clock()
        self._set(self._status.ready(message))

    def _start_and_wait(self) -> None:
        """Start the engine and wait until it serves the model, or raise LoadFailed.

        The phase is "starting engine" until the process answers HTTP at all, then
        "loading weights" until its model list names the model.
        """
        self.driver.stop(idle=self.traffic.idle)  # a reload starts a new process
        try:
            self.driver.start(self.model_id)
        except EngineStartError as exc:
            raise LoadFailed(str(exc)) from exc
        except OSError as exc:
            raise LoadFailed(f"cannot start the engine: {exc}") from exc
        deadline = time.monotonic() + self.settings.engine_start_timeout
        answered = False
        while time.monotonic() < deadline:
            if self._interrupt.is_set():
                raise LoadFailed("unloaded while loading")
            if not self.driver.running():
                raise LoadFailed("the engine process exited while loading")
            serves = self._serves()
            if serves:
                return
            if serves is False and not answered:
                answered = True
                self._set(self._status.with_phase("loading weights"))
            time.sleep(LOAD_POLL_SECONDS)
        raise LoadFailed(
            f"not serving after {self.settings.engine_start_timeout:.0f} s "
            "(TALKTUAH_ENGINE_START_TIMEOUT)"
        )

    def _serves(self) -> bool | None:
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
        wanted = self.driver.served_name(self.model_id)
        ids = {str(m.get("id", "")).split("@")[0] for m in listed.get("data", [])}
        return wanted in ids

    def _schedule_restart(self) -> None:
        """Plan the next restart after its backoff, or give up past the limit."""
        status = self._status
        limit = self.settings.engine_restart_limit
        plan = plan_restart(
            status,
            limit=limit,
            backoff=self.settings.engine_restart_backoff,
            now=time.time(),
            monotonic=self.clock(),
        )
        if plan is None:
            gave_up = (
                f"The engine for {self.model_id} kept failing; gave up after {limit} restarts. "
                f"Load it again to retry (`talktuah load {self.model_id}`, or "
                f"POST /api/load-model?model_id={self.model_id})."
            )
            self._set(replace(status, message=gave_up))
            return
        delay = max(0.0, plan.due - self.clock())
        logger.warning(
            "restarting the engine for %s in %.1fs (attempt %d of %d)",
            self.model_id, delay, plan.attempt, limit,
        )  # fmt: skip
        self._set(
            status.restarting(
                plan,
                f"{status.message} Restarting {self.model_id} in {delay:.0f} s (attempt "
                f"{plan.attempt} of {limit}); a load or switch replaces the restart.",
            )
        )

    def _unload(self, reason: str, evicted: str | None = None) -> None:
        status = self._status
        self.evicted = evicted or self.evicted
        if status.state == InstanceState.STOPPED:
            return
        self._set(status.unloading(f"Unloading {self.model_id}: {reason}"))
        self.driver.stop(idle=self.traffic.idle)
        self.measured_bytes = None
        self._set(self._status.stopped(reason))

    # -- an engine TalkTuah does not run -------------------------------------------------------

    def _watch_external(self) -> None:
        status = self._status
        healthy = self._external_healthy()
        if status.state == InstanceState.READY and not healthy:
            failure = Failure(self.model_id, "the engine does not answer", (), "", None,
                              FailureKind.CRASH)  # fmt: skip
            self._set(status.failed(failure, f"External engine at {self.base_url} is down."))
        elif status.state in (InstanceState.FAILED, InstanceState.STOPPED) and healthy:
            self._attach()

    def _attach(self) -> None:
        self._set(self._status.loading(f"Attaching to the engine at {self.base_url}."))
        if self._external_healthy():
            self.served_model = self._first_model()
            self._set(self._status.ready(f"External engine at {self.base_url}."))
            return
        failure = Failure(self.model_id, "the engine does not answer", (), "", None,
                          FailureKind.LOAD)  # fmt: skip
        self._set(
            self._status.failed(
                failure,
                f"The external engine at {self.base_url} does not answer; check "
                "TALKTUAH_ENGINE_URL.",
            )
        )

    def _external_healthy(self) -> bool:
        try:
            return self._http.get(self.driver.health_url).status_code == 200
        except httpx.HTTPError:
            return False

    def _first_model(self) -> str | None:
        try:
            data = self._http.get(f"{self.base_url}/v1/models").json().get("data", [])
        except (httpx.HTTPError, ValueError):
            return None
        return str(data[0]["id"]) if data else None
