"""`transformers serve` as a subprocess: the embedded CPU default engine.

The model is passed positionally, which makes `transformers serve` preload it and refuse
requests for any other (measured: 400 "Server is pinned to ..."). TalkTuah, not the engine,
decides what is served; switching starts a new process. Always offline: models come from
the models dir, and without HF_HUB_OFFLINE the engine's first request hangs on Hub look-ups.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

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
    #: After SIGTERM `transformers serve` took 0.42 s to exit on the machine of
    #: docs/benchmarks.md: up to 0.1 s until uvicorn looks at its exit flag, 0.1 s of
    #: uvicorn's shutdown, 0.21 s of `gc.collect()` and torch cache resets in its lifespan
    #: exit — freeing memory, which the kernel does at once for a killed process. It has
    #: no child processes, writes nothing on exit, holds no shared memory. With no request
    #: in flight nothing is lost by SIGKILL, and every switch is that much faster.
    kill_when_idle = True
    #: `transformers serve` (5.x) has /v1/responses, not /v1/messages (404). Its Responses
    #: stream is `data:` lines only, naming the model `<id>@main`, and it streams unless
    #: the body says `"stream": false` (the proxy always says).
    apis = frozenset({"responses"})
    missing_help = (
        "Install the CPU engine with `pip install torch==2.13.0 && pip install "
        "'talktuah[cpu]'`, or choose another engine with TALKTUAH_ENGINE=vllm|docker|external."
    )

    def __init__(self, settings: Settings, *, executable: str = "transformers") -> None:
        super().__init__(settings, executable=executable)

    def command(self, model_id: str, executable: str) -> list[str]:
        return transformers_command(self.settings, model_id, self.port, executable)

    def extra_env(self) -> dict[str, str]:
        threads = engine_threads(self.settings, os.environ)
        return {} if threads is None else {"OMP_NUM_THREADS": str(threads)}


def engine_threads(settings: Settings, environ: Mapping[str, str]) -> int | None:
    """torch's intra-op threads for the engine, or None to leave the environment's choice.

    torch starts one OpenMP thread per CPU. Next to it TalkTuah forwards every generated
    token, and an OpenMP step waits for its slowest thread: each time TalkTuah takes a CPU
    from one of them, the whole step stalls. On the 2-CPU machine of docs/benchmarks.md a
    16-token chat streamed through TalkTuah ran at 0.79x the engine's direct speed with
    one thread per CPU; with one CPU left free, see the numbers there. So the default
    leaves one CPU to TalkTuah.
    """
    if settings.engine_threads is not None:
        return settings.engine_threads
    if "OMP_NUM_THREADS" in environ:
        return None
    return max(1, len(os.sched_getaffinity(0)) - 1)
