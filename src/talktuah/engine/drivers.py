"""Pick the driver named by TALKTUAH_ENGINE."""

from __future__ import annotations

from ..config import Settings
from .base import EngineDriver


def make_driver(settings: Settings) -> EngineDriver:
    if settings.engine == "auto":
        from .auto import AutoDriver

        return AutoDriver(settings)
    if settings.engine == "llamacpp":
        from .llamacpp import LlamaCppDriver

        return LlamaCppDriver(settings, executable=settings.engine_executable)
    if settings.engine == "vllm":
        from .vllm import VllmDriver

        return VllmDriver(settings, executable=settings.engine_executable or "vllm")
    if settings.engine == "docker":
        from .docker import DockerDriver

        return DockerDriver(settings)
    if settings.engine == "external":
        from .external import ExternalDriver

        return ExternalDriver(settings)
    from .transformers import TransformersDriver

    return TransformersDriver(settings, executable=settings.engine_executable or "transformers")
