"""The life of one engine instance as a state machine: its states, its transitions, and the
immutable value that says where it stands.

    stopped ──Load──▶ loading ──served──▶ ready ──Unload──▶ unloading ──▶ stopped
                        │                   │
                        └──▶ failed ◀──died─┘
                               │  ▲
                      backoff  ▼  │ restart failed
                            restarting ──due, Load──▶ loading

Nothing here starts a process or takes a lock: `EngineInstance` (instance.py) holds one
`InstanceStatus`, replaces it whole with what these methods return, and only from its
command loop (STYLE.md item 11). A transition the table does not allow raises
`IllegalTransition`, so a bug shows up as an error in a unit test instead of as a status
that says "ready" with a restart pending. tests/engine/test_lifecycle.py runs every
transition without a process.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from enum import StrEnum

from .status import Failure, PendingRestart


class InstanceState(StrEnum):
    LOADING = "loading"
    READY = "ready"
    UNLOADING = "unloading"
    STOPPED = "stopped"
    FAILED = "failed"
    RESTARTING = "restarting"


_S = InstanceState

#: Which state may follow which. A load may start from anything that holds no process
#: being stopped: a restart waiting out its backoff is superseded by a load, a ready
#: instance is reloaded by a forced switch.
ALLOWED: dict[InstanceState, frozenset[InstanceState]] = {
    _S.STOPPED: frozenset({_S.LOADING}),
    _S.LOADING: frozenset({_S.READY, _S.FAILED, _S.UNLOADING}),
    _S.READY: frozenset({_S.LOADING, _S.UNLOADING, _S.FAILED}),
    _S.UNLOADING: frozenset({_S.STOPPED}),
    _S.FAILED: frozenset({_S.LOADING, _S.RESTARTING, _S.UNLOADING}),
    _S.RESTARTING: frozenset({_S.LOADING, _S.UNLOADING, _S.FAILED}),
}


class IllegalTransition(RuntimeError):
    """A transition the table does not allow: a bug in the caller, never a user's error."""


@dataclass(frozen=True)
class InstanceStatus:
    """Where one instance stands; replaced whole, never changed in place."""

    model_id: str
    state: InstanceState = InstanceState.STOPPED
    message: str = "Not loaded."
    phase: str = ""  # while loading: "starting engine", then "loading weights"
    loading_since: float | None = None  # time.monotonic()
    loaded_at: float | None = None  # wall clock, for people
    failure: Failure | None = None
    restarts: int = 0  # automatic restarts in a row
    restart: PendingRestart | None = None

    def _to(self, state: InstanceState, message: str, **changes: object) -> InstanceStatus:
        if state not in ALLOWED[self.state]:
            raise IllegalTransition(f"{self.model_id}: {self.state} -> {state} is not allowed")
        return replace(self, state=state, message=message, **changes)  # type: ignore[arg-type]

    def loading(self, message: str, *, restart: bool = False) -> InstanceStatus:
        """A load begins; one asked for (not an automatic restart) starts the count anew."""
        return self._to(
            _S.LOADING,
            message,
            phase="starting engine",
            loading_since=time.monotonic(),
            loaded_at=None,
            restart=None,
            restarts=self.restarts if restart else 0,
            failure=self.failure if restart else None,
        )

    def with_phase(self, phase: str) -> InstanceStatus:
        if self.state != _S.LOADING:
            raise IllegalTransition(f"{self.model_id}: a phase only while loading ({self.state})")
        return replace(self, phase=phase)

    def ready(self, message: str) -> InstanceStatus:
        return self._to(
            _S.READY,
            message,
            phase="",
            loading_since=None,
            loaded_at=time.time(),
            failure=None,
        )

    def failed(self, failure: Failure, message: str) -> InstanceStatus:
        return self._to(
            _S.FAILED, message, phase="", loading_since=None, loaded_at=None, failure=failure
        )

    def restarting(self, plan: PendingRestart, message: str) -> InstanceStatus:
        return self._to(_S.RESTARTING, message, restart=plan, restarts=plan.attempt)

    def unloading(self, message: str) -> InstanceStatus:
        return self._to(_S.UNLOADING, message, phase="", loading_since=None, restart=None)

    def stopped(self, message: str) -> InstanceStatus:
        return self._to(_S.STOPPED, message, loaded_at=None)

    @property
    def serving(self) -> bool:
        return self.state == _S.READY

    @property
    def holds_process(self) -> bool:
        """Whether an engine process may be running (and memory held) in this state."""
        return self.state in (_S.LOADING, _S.READY, _S.UNLOADING)


def plan_restart(
    status: InstanceStatus, *, limit: int, backoff: float, now: float, monotonic: float
) -> PendingRestart | None:
    """The next automatic restart of a failed instance, or None past `limit`.

    The wait doubles each time: `backoff`, 2x, 4x ...; a load asked for in the meantime
    supersedes the restart (ALLOWED: restarting -> loading).
    """
    if status.restarts >= limit:
        return None
    attempt = status.restarts + 1
    delay = backoff * 2 ** (attempt - 1)
    return PendingRestart(status.model_id, attempt, limit, at=now + delay, due=monotonic + delay)
