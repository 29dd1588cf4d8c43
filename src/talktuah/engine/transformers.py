"""`transformers serve` as a subprocess: the embedded CPU default engine.

The model is passed positionally, which makes `transformers serve` preload it and refuse
requests for any other (measured: 400 "Server is pinned to ..."). TalkTuah, not the engine,
decides what is served; switching starts a new process. Always offline: models come from
the models dir, and without HF_HUB_OFFLINE the engine's first request hangs on Hub look-ups.
"""

from __future__ import annotations

from ..config import Settings
from ..errors import EngineError
from .base import EngineDriver
from .env import engine_env, find_executable, url_host
from .ports import pick_port
from .process import ManagedProcess


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


class TransformersDriver(EngineDriver):
    name = "transformers"

    def __init__(self, settings: Settings, *, executable: str = "transformers") -> None:
        self.settings = settings
        self.executable = executable
        self.port = pick_port(settings.engine_host, settings.engine_port)
        self.process = ManagedProcess(settings.engine_dir, "engine")

    @property
    def base_url(self) -> str:
        return f"http://{url_host(self.settings.engine_host)}:{self.port}"

    def start(self, model_id: str) -> None:
        executable = find_executable(self.executable)
        if executable is None:
            raise EngineError(
                "`transformers serve` is not installed. Install the CPU engine with "
                "`pip install torch==2.13.0 && pip install 'talktuah[cpu]'`, or choose another "
                "engine with TALKTUAH_ENGINE=vllm|docker|external."
            )
        self.stop()
        argv = transformers_command(self.settings, model_id, self.port, executable)
        self.process.start(argv, engine_env(self.settings))

    def stop(self) -> None:
        self.process.stop(self.settings.engine_stop_timeout)

    def running(self) -> bool:
        return self.process.running()

    def log_tail(self, lines: int = 50) -> list[str]:
        return self.process.log_tail(lines)

    def cleanup_orphans(self) -> None:
        self.process.cleanup_orphan(self.settings.engine_stop_timeout)
