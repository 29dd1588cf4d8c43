"""An OpenAI-compatible engine managed elsewhere (another vLLM, llama.cpp server, ...).

TalkTuah only proxies to it and watches its health; it cannot load or switch its models.
"""

from __future__ import annotations

from ..config import Settings
from ..errors import EngineStartError
from .base import EngineDriver


class ExternalDriver(EngineDriver):
    name = "external"
    manages_models = False
    #: Unknown ahead of time: requests are passed on, and a server without the API answers
    #: its own 404, relayed in that API's error shape.
    apis = frozenset({"messages", "count_tokens", "responses"})

    def __init__(self, settings: Settings) -> None:
        if not settings.engine_url:
            raise EngineStartError(
                "TALKTUAH_ENGINE=external needs TALKTUAH_ENGINE_URL, e.g. http://gpu-box:8000"
            )
        url = settings.engine_url.rstrip("/")
        self._base_url = url.removesuffix("/v1")

    @property
    def base_url(self) -> str:
        return self._base_url

    @property
    def health_url(self) -> str:
        """Not every OpenAI-compatible server has /health; all of them list models."""
        return f"{self._base_url}/v1/models"

    def start(self, model_id: str) -> None:
        raise EngineStartError("The external engine is managed outside TalkTuah.")

    def stop(self, *, idle: bool = False) -> None:
        return None

    def running(self) -> bool:
        return True

    def log_tail(self, lines: int = 50) -> list[str]:
        return []
