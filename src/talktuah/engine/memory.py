"""What a loaded model holds, in the memory the budget counts: estimated before it loads,
measured once it runs.

The CPU engines (llama.cpp, transformers) hold RAM: measured as the resident bytes of the
engine's process group (it runs in a session of its own, so its workers count too). vLLM
holds GPU memory, and not in proportion to the model: at start it reserves
`--gpu-memory-utilization` of each GPU it runs on (weights, then KV cache to fill the rest),
so that share is its estimate, and nvidia-smi's per-process table measures it. A
percentage `TALKTUAH_MEMORY_BUDGET` is of RAM for the CPU engines and of the visible GPUs'
memory for vLLM (and vLLM in docker).

Estimates are only for the first load of a model: the pool keeps what each model measured
and uses that the next time (pool.py). Their parts: the weights (the files on disk; llama.cpp
maps them), the KV cache of the context TalkTuah gives the engine (llama.cpp: read from the
GGUF header, gguf_header.ModelShape), and the engine's own runtime. How close they come is
in docs/benchmarks.md (§10).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from ..config import Settings
from ..downloads.gguf_header import HeaderError, read_local_shape
from ..host_memory import (
    MIB,
    gpu_memory_totals,
    gpu_process_memory,
    process_group_members,
    process_group_rss,
    total_memory,
)

logger = logging.getLogger(__name__)

MemoryKind = Literal["ram", "gpu"]

#: llama-server and the Python that launches it, beyond weights and KV cache: measured with
#: a tiny model (under 1 MiB of both) at ~38 MiB of RSS.
LLAMACPP_RUNTIME_BYTES = 40 * MIB
#: `transformers serve` (Python, torch, transformers, its web server) beyond the weights:
#: measured with a tiny model at ~410 MiB of RSS.
TRANSFORMERS_RUNTIME_BYTES = 420 * MIB
#: Any other engine beyond its weights when nothing better is known: KV cache of a context,
#: the runtime, activations.
CONTEXT_HEADROOM_BYTES = 256 * MIB


def memory_kind(engine: str) -> MemoryKind:
    """Which memory `engine`'s models hold: GPU for vLLM (also in docker), RAM otherwise."""
    return "gpu" if engine in ("vllm", "docker") else "ram"


def estimate_bytes(
    settings: Settings,
    engine: str,
    *,
    weights_bytes: int,
    gguf_file: Path | None = None,
    gpu_totals: Sequence[int] | None = None,
) -> int:
    """Bytes a model is expected to hold once `engine` has loaded it.

    `gguf_file`: the model's first GGUF file, whose header sizes llama.cpp's KV cache.
    `gpu_totals`: each visible GPU's memory, for vLLM's reservation on the first
    tensor x pipeline parallel of them (None: unknown, and the weights plus headroom stand
    in).
    """
    if engine == "llamacpp":
        return (
            weights_bytes
            + _kv_cache_bytes(gguf_file, settings.engine_ctx)
            + (LLAMACPP_RUNTIME_BYTES)
        )
    if engine == "transformers":
        return weights_bytes + TRANSFORMERS_RUNTIME_BYTES
    if memory_kind(engine) == "gpu" and gpu_totals:
        gpus = settings.vllm_tensor_parallel_size * settings.vllm_pipeline_parallel_size
        return int(settings.vllm_gpu_memory_utilization * sum(gpu_totals[:gpus]))
    return weights_bytes + CONTEXT_HEADROOM_BYTES


def _kv_cache_bytes(gguf_file: Path | None, n_ctx: int) -> int:
    """llama.cpp's F16 KV cache for the context it will get; headroom if the header is
    unreadable (llama.cpp will say why when it loads)."""
    if gguf_file is None:
        return CONTEXT_HEADROOM_BYTES
    try:
        shape = read_local_shape(gguf_file)
    except (HeaderError, OSError) as exc:
        logger.debug("no KV estimate for %s: %s", gguf_file, exc)
        return CONTEXT_HEADROOM_BYTES
    return shape.kv_cache_bytes(shape.context(n_ctx))


def total_bytes(kind: MemoryKind) -> int | None:
    """What a percentage budget is a share of: RAM (or the cgroup's limit), or the memory of
    the GPUs this process may use; None when it cannot be read."""
    if kind == "ram":
        return total_memory()
    totals = gpu_memory_totals()
    return sum(totals) if totals else None


def measure_bytes(kind: MemoryKind, pgid: int) -> int:
    """What the engine whose process group is `pgid` holds now; 0 when nothing is seen."""
    if kind == "ram":
        return process_group_rss(pgid)
    members = set(process_group_members(pgid))
    return sum(used for pid, used in gpu_process_memory() if pid in members)
