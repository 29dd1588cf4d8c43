"""The small interface every engine driver implements, and the states the supervisor reports.

A driver knows how to launch one engine serving one model and how to take it down; it knows
nothing of switching, health policy or restarts — that is `supervisor.py`, the same for all.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from enum import StrEnum

from ..config import Settings
from ..errors import EngineStartError
from .env import engine_env, find_executable, url_host
from .ports import pick_port
from .process import ManagedProcess


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
    #: True when the engine's graceful exit does nothing the kernel would not do for a
    #: killed process: it may then be killed outright whenever no request is in flight to
    #: it, instead of waiting for its shutdown (stop(idle=True)).
    kill_when_idle: bool = False
    #: True when the engine reports usage in a stream only if asked
    #: (`stream_options.include_usage`): the proxy asks, for the token metrics, and drops
    #: the extra usage chunk when the client did not ask (llama.cpp's server).
    stream_usage_on_request: bool = False
    #: The agent APIs the engine serves natively, which the proxy passes through as they
    #: are: "messages" (Anthropic's /v1/messages), "count_tokens" (its
    #: /v1/messages/count_tokens), "responses" (OpenAI's /v1/responses). Any other is
    #: refused in that API's own error shape (agent_apis/), never translated by halves.
    apis: frozenset[str] = frozenset()

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
    def stop(self, *, idle: bool = False) -> None:
        """Stop the engine and everything it started; idempotent.

        `idle`: TalkTuah has no request in flight to the engine, so there is nothing a
        graceful stop would let finish (see `kill_when_idle`).
        """

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


class SubprocessDriver(EngineDriver):
    """An engine TalkTuah runs as a local process (transformers serve, vllm serve)."""

    #: What to tell the user when the executable is missing.
    missing_help: str = "Install the engine or choose another TALKTUAH_ENGINE."

    def __init__(self, settings: Settings, *, executable: str) -> None:
        self.settings = settings
        self.executable = executable
        self.port = pick_port(settings.engine_host, settings.engine_port)
        self.process = ManagedProcess(settings.engine_dir, "engine")

    @abstractmethod
    def command(self, model_id: str, executable: str) -> list[str]:
        """The argv that serves `model_id` on `self.port`."""

    @property
    def base_url(self) -> str:
        return f"http://{url_host(self.settings.engine_host)}:{self.port}"

    def start(self, model_id: str) -> None:
        executable = find_executable(self.executable)
        if executable is None:
            raise EngineStartError(f"`{self.executable}` was not found. {self.missing_help}")
        self.stop()
        env = engine_env(self.settings) | self.extra_env()
        self.process.start(self.command(model_id, executable), env)

    def extra_env(self) -> dict[str, str]:
        """What this engine needs in its environment beyond what every engine gets."""
        return {}

    def stop(self, *, idle: bool = False) -> None:
        graceful = not (idle and self.kill_when_idle)
        self.process.stop(self.settings.engine_stop_timeout, graceful=graceful)

    def running(self) -> bool:
        return self.process.running()

    def log_tail(self, lines: int = 50) -> list[str]:
        return self.process.log_tail(lines)

    def cleanup_orphans(self) -> None:
        self.process.cleanup_orphan(self.settings.engine_stop_timeout)
