"""What the supervisor knows about its engine, as one immutable value, and how it reads.

The supervisor replaces its `EngineStatus` whole under one lock (STYLE.md item 11), so a
reader never sees a half-made change — "ready" with the previous model's loading phase, a
restart pending on a model already switched away from. What serves now (`state`,
`serving`) and the last thing that went wrong (`failure`) are separate: a failed switch
that was rolled back leaves the previous model serving and a notice to read and dismiss.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from .base import EngineState


class FailureKind(StrEnum):
    LOAD = "load"  # the model did not load and nothing serves
    SWITCH = "switch"  # a switch failed; the previous model serves again
    CRASH = "crash"  # the engine died while serving
    RESTART = "restart"  # an automatic restart did not load


@dataclass(frozen=True)
class Failure:
    model_id: str
    reason: str  # what the supervisor saw: "the engine process exited while loading"
    log_tail: tuple[str, ...]
    cause: str  # the engine's last exception line (diagnosis.py), else `reason`
    hint: str | None
    kind: FailureKind
    at: float = field(default_factory=time.time)

    def to_api(self) -> dict[str, Any]:
        return {
            "model": self.model_id,
            "kind": str(self.kind),
            "message": self.reason,
            "cause": self.cause,
            "hint": self.hint,
            "log_tail": list(self.log_tail),
            "at": _iso(self.at),
        }


@dataclass(frozen=True)
class PendingRestart:
    """An automatic restart waiting out its backoff: a switch may take its place."""

    model_id: str
    attempt: int
    limit: int
    at: float  # wall clock, for people
    due: float  # on the instance's clock (time.monotonic()), for the monitor

    def to_api(self) -> dict[str, Any]:
        return {
            "model": self.model_id,
            "attempt": self.attempt,
            "limit": self.limit,
            "next_restart_at": _iso(self.at),
            "seconds_left": round(max(0.0, self.at - time.time()), 1),
        }


@dataclass(frozen=True)
class EngineStatus:
    state: EngineState = EngineState.STOPPED
    message: str = "No model is active yet."
    serving: str | None = None  # the model the engine serves (only when ready)
    loading: str | None = None
    loading_since: float | None = None  # time.monotonic()
    phase: str = ""
    failure: Failure | None = None
    #: The failure is a switch that was rolled back and no switch was asked for since: the
    #: API's `status` then says `failed` (its documented meaning for old clients).
    switch_failed: bool = False
    restarts: int = 0  # automatic restarts in a row
    restart: PendingRestart | None = None

    def loading_model(self, model_id: str, message: str) -> EngineStatus:
        """Start loading `model_id`; a loading that goes on (a rollback) keeps its clock."""
        return replace(
            self,
            state=EngineState.LOADING,
            message=message,
            serving=None,
            loading=model_id,
            loading_since=self.loading_since or time.monotonic(),
            phase="starting engine",
            restart=None,
        )

    def settled(self, state: EngineState, message: str, serving: str | None = None) -> EngineStatus:
        """Leave loading for `state`; only a ready engine serves a model."""
        return replace(
            self,
            state=state,
            message=message,
            serving=serving if state == EngineState.READY else None,
            loading=None,
            loading_since=None,
            phase="",
        )

    @property
    def reported(self) -> EngineState:
        """The API's `status`: the engine's state, or `failed` after a rolled-back switch."""
        if self.state == EngineState.READY and self.switch_failed and self.failure is not None:
            return EngineState.FAILED
        return self.state

    def to_api(self, *, engine: str, active_model: str | None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "status": str(self.reported),
            "engine_state": str(self.state),
            "engine": engine,
            "model_loaded": self.state == EngineState.READY,
            "current_model": active_model,
            "serving_model": self.serving,
            "loading_model": self.loading,
            "message": self.message,
            "restarts": self.restarts,
            "restart_pending": self.restart.to_api() if self.restart else None,
            "last_failure": self.failure.to_api() if self.failure else None,
        }
        if self.loading_since is not None:
            body["loading"] = {
                "model": self.loading,
                "phase": self.phase,
                "elapsed_seconds": round(time.monotonic() - self.loading_since, 1),
            }
        if self.failure is not None:  # the fields clients read before `last_failure`
            body["error"] = self.failure.reason
            body["failed_model"] = self.failure.model_id
            body["log_tail"] = list(self.failure.log_tail)
        return body


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")
