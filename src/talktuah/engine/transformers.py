"""`transformers serve` as a subprocess: the embedded CPU default engine.

The model is passed positionally, which makes `transformers serve` preload it and refuse
requests for any other (measured: 400 "Server is pinned to ..."). TalkTuah, not the engine,
decides what is served; switching starts a new process. Always offline: models come from
the models dir, and without HF_HUB_OFFLINE the engine's first request hangs on Hub look-ups.
"""

from __future__ import annotations

from ..config import Settings
from .base import SubprocessDriver


def transformers_command(
    settings: Settings, model_id: str, port: int, executable: str = "transformers"
) -> list[str]:
    return [
        executable, "serve", model_id,
        "--host", settings.engine_host, "--port", str(port),
        "--device", settings.engine_device, "--dtype", settings.engine_dtype,
        "--log-level", "info",
        *settings.engine_extra_args,
    ]  # fmt: skip


class TransformersDriver(SubprocessDriver):
    name = "transformers"
    missing_help = (
        "Install the CPU engine with `pip install torch==2.13.0 && pip install "
        "'talktuah[cpu]'`, or choose another engine with TALKTUAH_ENGINE=vllm|docker|external."
    )

    def __init__(self, settings: Settings, *, executable: str = "transformers") -> None:
        super().__init__(settings, executable=executable)

    def command(self, model_id: str, executable: str) -> list[str]:
        return transformers_command(self.settings, model_id, self.port, executable)
