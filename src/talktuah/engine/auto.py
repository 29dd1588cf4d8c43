"""`TALKTUAH_ENGINE=auto` (the default): the engine follows the model.

GGUF models run on llama.cpp's server, safetensors models on `transformers serve`. Until
several models are served at once ([4/7]) one engine runs at a time, so this is one driver
that hands each `start` to the engine the model needs, stopping the other first; the
supervisor sees one driver whose `name` says which engine serves now.
"""

from __future__ import annotations

from typing import Any

from ..config import Settings
from .base import EngineDriver
from .llamacpp import LlamaCppDriver, is_gguf_model
from .transformers import TransformersDriver


class AutoDriver(EngineDriver):
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.drivers: dict[str, EngineDriver] = {
            # TALKTUAH_ENGINE_EXECUTABLE keeps meaning `transformers` here, as before `auto`
            # existed; a user's own llama-server is TALKTUAH_ENGINE=llamacpp's.
            "transformers": TransformersDriver(
                settings, executable=settings.engine_executable or "transformers"
            ),
            "llamacpp": LlamaCppDriver(settings),
        }
        self.current: EngineDriver = self.drivers["transformers"]
        self._follow(self.current)

    def _follow(self, driver: EngineDriver) -> None:
        self.current = driver
        self.name = driver.name

    @property
    def kill_when_idle(self) -> bool:
        return self.current.kill_when_idle

    @kill_when_idle.setter
    def kill_when_idle(self, value: bool) -> None:
        self.current.kill_when_idle = value

    @property
    def stream_usage_on_request(self) -> bool:  # type: ignore[override]
        return self.current.stream_usage_on_request

    @property
    def apis(self) -> frozenset[str]:  # type: ignore[override]
        return self.current.apis

    def engine_for(self, model_id: str) -> str:
        """The engine that will run `model_id` (listings show it)."""
        return "llamacpp" if is_gguf_model(self.settings.models_dir, model_id) else "transformers"

    def __getattr__(self, name: str) -> Any:
        """Anything else is the running engine's (its `process`, for one)."""
        if name in ("current", "drivers"):
            raise AttributeError(name)
        return getattr(self.current, name)

    @property
    def port(self) -> int:
        return int(self.current.port)  # type: ignore[attr-defined]

    @port.setter
    def port(self, value: int) -> None:
        self.current.port = value  # type: ignore[attr-defined]

    @property
    def base_url(self) -> str:
        return self.current.base_url

    @property
    def health_url(self) -> str:
        return self.current.health_url

    def start(self, model_id: str) -> None:
        driver = self.drivers[self.engine_for(model_id)]
        if driver is not self.current:
            self.current.stop()
        self._follow(driver)
        driver.start(model_id)

    def stop(self, *, idle: bool = False) -> None:
        self.current.stop(idle=idle)

    def running(self) -> bool:
        return self.current.running()

    def log_tail(self, lines: int = 50) -> list[str]:
        return self.current.log_tail(lines)

    def cleanup_orphans(self) -> None:
        self.current.cleanup_orphans()  # every engine uses the same pidfile (engine.pid)

    def served_name(self, model_id: str) -> str:
        return self.current.served_name(model_id)
