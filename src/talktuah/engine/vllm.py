"""`vllm serve` as a subprocess: the GPU engine, one model per process.

What was checked against vLLM's own sources (vllm-project/vllm):

- `vllm/entrypoints/cli/serve.py`: usage is `vllm serve [model_tag] [options]`; a positional
  `model_tag` overrides `--model`. We pass the repo id positionally.
- `vllm/engine/arg_utils.py` (`EngineArgs.add_cli_args`): `--served-model-name`, `--dtype`,
  `--max-model-len` (ModelConfig), `--tensor-parallel-size`/`-tp`,
  `--pipeline-parallel-size`/`-pp`, `--distributed-executor-backend` (ParallelConfig; `ray`
  is vLLM's multi-node backend), `--gpu-memory-utilization` (CacheConfig). `--host` and
  `--port` are the OpenAI frontend's own (default 8000).
- `vllm/model_executor/model_loader/weight_utils.py` (`download_weights_from_hf`): with
  `HF_HUB_OFFLINE` set, vLLM calls `snapshot_download(..., local_files_only=True)` with the
  default cache dir, so a repo id resolves from `HF_HUB_CACHE` without touching the Hub.
- `vllm/entrypoints/serve/instrumentator/health.py`: `GET /health` answers 200, or 503 once
  the engine is dead. `/v1/models` lists the `--served-model-name`.
- `vllm/usage/usage_lib.py`: usage stats are sent to vLLM's server unless
  `VLLM_NO_USAGE_STATS=1` or `DO_NOT_TRACK=1`; a self-hosted server sends nothing.

vLLM cannot be installed on CPU-only machines (it pins a CUDA torch): this driver is tested
with a stand-in executable there; scripts/gpu/vllm_check.py runs it for real on a GPU machine
(done on an H100 with vLLM 0.26: docs/engines.md).
"""

from __future__ import annotations

from ..config import Settings
from .base import SubprocessDriver

#: Environment a user may have set for their own Hugging Face use; the engine gets ours.


def vllm_serve_args(settings: Settings, model_id: str, host: str, port: int) -> list[str]:
    """Everything after `vllm serve`: shared by the subprocess and the docker drivers."""
    args = [
        model_id,
        "--host", host,
        "--port", str(port),
        "--served-model-name", model_id,
        "--tensor-parallel-size", str(settings.vllm_tensor_parallel_size),
        "--pipeline-parallel-size", str(settings.vllm_pipeline_parallel_size),
        "--gpu-memory-utilization", str(settings.vllm_gpu_memory_utilization),
        "--dtype", settings.engine_dtype,
    ]  # fmt: skip
    if settings.vllm_max_model_len is not None:
        args += ["--max-model-len", str(settings.vllm_max_model_len)]
    if settings.vllm_distributed_executor_backend:
        args += ["--distributed-executor-backend", settings.vllm_distributed_executor_backend]
    return [*args, *settings.engine_extra_args]


def vllm_command(
    settings: Settings, model_id: str, port: int, executable: str = "vllm"
) -> list[str]:
    """The argv of `vllm serve` for `model_id` on `port`."""
    return [executable, "serve", *vllm_serve_args(settings, model_id, settings.engine_host, port)]


#: vLLM's `entrypoints/anthropic/api_router.py` serves /v1/messages and
#: /v1/messages/count_tokens, `entrypoints/openai` /v1/responses.
VLLM_APIS = frozenset({"messages", "count_tokens", "responses"})


class VllmDriver(SubprocessDriver):
    name = "vllm"
    apis = VLLM_APIS
    missing_help = (
        "Install vLLM on a CUDA machine (`pip install vllm`, in "
        "TalkTuah's environment or on PATH), run it in a container with "
        "TALKTUAH_ENGINE=docker, or choose TALKTUAH_ENGINE=transformers|external."
    )

    def __init__(self, settings: Settings, *, executable: str = "vllm") -> None:
        super().__init__(settings, executable=executable)

    def command(self, model_id: str, executable: str) -> list[str]:
        return vllm_command(self.settings, model_id, self.port, executable)

    def served_name(self, model_id: str) -> str:
        return model_id  # we pass --served-model-name <model_id>
