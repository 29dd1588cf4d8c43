"""Fit before bytes move: a GGUF model that cannot run in this machine's RAM is refused
before its download starts, with the number and a smaller quant to try.

llama.cpp holds the weights (the file, memory-mapped) and a KV cache of
`context x layers x kv heads x head size x 2 (K, V) x 2 bytes (F16)`; a 70B model at a 4k
context needs 1.25 GiB of KV beside its file. The context is TalkTuah's own
`TALKTUAH_ENGINE_CTX` (capped at the model's), the shape comes from the GGUF header
(gguf_header.py), read with one Range request. The limit is the machine's total RAM (or the
container's cgroup limit): what is free right now changes when the running engine stops for
a switch, the total does not. `force=true` skips the check.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import InsufficientMemoryError
from ..host_memory import total_memory
from ..quants import Quant
from ..sizes import format_bytes
from .gguf_header import HeaderError, ModelShape, fetch_shape, read_local_shape
from .hub_errors import is_network_error
from .plan import DownloadPlan, cached_file

logger = logging.getLogger(__name__)

MemoryReader = Callable[[], int | None]


@dataclass(frozen=True)
class MemoryNeed:
    """What a model takes in RAM under llama.cpp: its files plus the KV cache."""

    file_bytes: int
    kv_bytes: int | None  # None: the header could not be read
    n_ctx: int | None

    @property
    def total(self) -> int:
        return self.file_bytes + (self.kv_bytes or 0)

    def describe(self) -> str:
        if self.kv_bytes is None:
            return f"{format_bytes(self.file_bytes)} (its file; the KV cache could not be sized)"
        return (
            f"{format_bytes(self.total)} ({format_bytes(self.file_bytes)} file + "
            f"{format_bytes(self.kv_bytes)} KV cache for a {self.n_ctx}-token context)"
        )


@dataclass(frozen=True)
class FitCheck:
    """Everything the check needs, passed in (tests give `ram` a small number)."""

    endpoint: str | None
    token: str | None
    models_dir: Path
    n_ctx: int
    timeout: float
    ram: MemoryReader = total_memory


def check_fits(check: FitCheck, plan: DownloadPlan, model_id: str, repo_id: str) -> MemoryNeed:
    """Raise InsufficientMemoryError when the planned GGUF model cannot fit in RAM."""
    assert plan.quant is not None, "only GGUF selections are checked"
    shape = _shape(check, plan, repo_id)
    extra = sum(f.size for f in plan.files if f.path not in plan.quant.files)  # the projector
    need = _need(plan.quant.size or plan.bytes_total, extra, shape, check.n_ctx)
    ram = check.ram()
    if ram is None:
        logger.warning("could not read this machine's RAM: %s is not checked against it", model_id)
        return need
    if need.total <= ram:
        return need
    smaller = [
        q
        for q in plan.quants
        if q.size is not None
        and q.size < (plan.quant.size or 0)
        and _need(q.size, extra, shape, check.n_ctx).total <= ram
    ]
    raise InsufficientMemoryError(_refusal(model_id, repo_id, need, ram, smaller, plan.quants))


def _shape(check: FitCheck, plan: DownloadPlan, repo_id: str) -> ModelShape | None:
    """The first shard's header: from the disk when it is here, else from the Hub."""
    assert plan.quant is not None
    first = plan.quant.first
    try:
        local = cached_file(repo_id, first, check.models_dir, plan.commit_hash)
        if local is not None:
            return read_local_shape(local)
        return fetch_shape(
            repo_id, first, commit=plan.commit_hash, endpoint=check.endpoint,
            token=check.token, timeout=check.timeout,
        )  # fmt: skip
    except HeaderError as exc:
        reason = str(exc)
    except Exception as exc:  # the network, or the hub's HTTP client
        if not is_network_error(exc) and not isinstance(exc, OSError):
            raise
        reason = f"{type(exc).__name__}: {exc}"
    logger.warning(
        "could not read the GGUF header of %s in %s (%s): the RAM check counts the file size "
        "only",
        first, repo_id, reason,
    )  # fmt: skip
    return None


def _need(file_bytes: int, extra: int, shape: ModelShape | None, n_ctx: int) -> MemoryNeed:
    if shape is None:
        return MemoryNeed(file_bytes + extra, None, None)
    ctx = shape.context(n_ctx)
    return MemoryNeed(file_bytes + extra, shape.kv_cache_bytes(ctx), ctx)


def _refusal(
    model_id: str,
    repo_id: str,
    need: MemoryNeed,
    ram: int,
    smaller: list[Quant],
    quants: Sequence[Quant],
) -> str:
    text = (
        f"{model_id} does not fit in this machine's RAM: it needs about {need.describe()}, "
        f"and this machine has {format_bytes(ram)}. "
    )
    if smaller:
        best = max(smaller, key=lambda q: q.size or 0)
        text += f"Try a smaller quant: {repo_id}:{best.tag} ({format_bytes(best.size)})"
    else:
        sized = [q for q in quants if q.size is not None]
        smallest = min(sized, key=lambda q: q.size or 0) if sized else None
        text += "No quant of this repo fits"
        if smallest is not None:
            text += f" (the smallest is {repo_id}:{smallest.tag}, {format_bytes(smallest.size)})"
        text += "; pick a smaller model"
    if need.kv_bytes:
        text += ", or lower TALKTUAH_ENGINE_CTX (the KV cache grows with it)"
    return text + ". Add force=true to download it anyway."
