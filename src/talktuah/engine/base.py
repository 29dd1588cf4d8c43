"""The small interface every engine driver implements, and the states the supervisor reports.

A driver knows how to launch one engine serving one model and how to take it down; it knows
nothing of switching, health policy or restarts — that is `supervisor.py`, the same for all.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from enum import StrEnum


class EngineState(StrEnum):
    STOPPED = "stopped"
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"


class EngineDriver(ABC):
    """One engine at a time: `start(model)` launches it, `stop()` ends it.

    `start` returns as soon as the engine is launched; the supervisor then polls
    `health_url` until it answers and `/v1/models` lists the model.
    """

    name: str = "engine"
    #: False for engines TalkTuah does not launch (external): switching cannot load models.
    manages_models: bool = True

    @property
    @abstractmethod
    def base_url(self) -> str:
        """The engine's root URL; the OpenAI API lives under `{base_url}/v1`."""

    @property
    def health_url(self) -> str:
        return f"{self.base_url}/health"

    @abstractmethod
    def start(self, model_id: str) -> None:
        """Launch the engine serving `model_id` (a repo id present in the models dir)."""

    @abstractmethod
    def stop(self) -> None:
        """Stop the engine and everything it started; idempotent."""

    @abstractmethod
    def running(self) -> bool:
        """Whether the launched process or container is still alive."""

    @abstractmethod
    def log_tail(self, lines: int = 50) -> list[str]:
        """The last lines the engine wrote, for `failed` reports."""

    def cleanup_orphans(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Remove an engine a killed TalkTuah left behind (called once at start)."""

    def served_name(self, model_id: str) -> str:
        """The `model` value the engine expects in requests for `model_id`."""
        return model_id
