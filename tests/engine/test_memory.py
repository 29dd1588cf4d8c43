"""What a model holds: estimates before a load, measurements after, RAM or GPU (memory.py).

GPU memory comes from a stand-in nvidia-smi (tests/support/nvidia_smi.py: no GPU here).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from talktuah.config import Settings
from talktuah.downloads.gguf_header import read_local_shape
from talktuah.engine.memory import (
    CONTEXT_HEADROOM_BYTES,
    LLAMACPP_RUNTIME_BYTES,
    TRANSFORMERS_RUNTIME_BYTES,
    estimate_bytes,
    measure_bytes,
    memory_kind,
    total_bytes,
)
from talktuah.engine.pool import EnginePool
from talktuah.host_memory import MIB, gpu_process_memory, total_memory
from talktuah.metrics import Metrics
from talktuah.state import StateDB
from talktuah.store import ModelStore

from ..support.gguf_shapes import gguf_with_shape
from ..support.nvidia_smi import APPS, GPUS, FakeNvidiaSmi, install_nvidia_smi
from ..support.tiny_model import install_in_cache

GIB = 2**30
#: The tiny test model's shape (tests/support/tiny_model.py) in a header-only GGUF: what the
#: estimates read, without building the model (torch's import alone takes seconds).
TINY = {"layers": 2, "embedding": 64, "heads": 4, "kv_heads": 4, "context": 256}


@pytest.fixture
def smi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeNvidiaSmi:
    return install_nvidia_smi(tmp_path, monkeypatch)


def store(settings: Settings) -> ModelStore:
    return ModelStore(settings.models_dir, StateDB(settings.db_path), engine=settings.engine)


def test_memory_kind_is_gpu_for_vllm_only() -> None:
    assert [memory_kind(e) for e in ("vllm", "docker", "llamacpp", "transformers", "auto")] == [
        "gpu", "gpu", "ram", "ram", "ram",
    ]  # fmt: skip


def test_llamacpp_estimate_is_file_plus_kv_cache_of_the_context_plus_runtime(
    tmp_path: Path,
) -> None:
    path = tmp_path / "m.gguf"
    path.write_bytes(gguf_with_shape(**TINY))
    settings = Settings(home=tmp_path / "home", engine_ctx=128)
    shape = read_local_shape(path)
    kv = shape.kv_cache_bytes(shape.context(128))
    assert kv > 0
    got = estimate_bytes(settings, "llamacpp", weights_bytes=1000, gguf_file=path)
    assert got == 1000 + kv + LLAMACPP_RUNTIME_BYTES
    bigger = estimate_bytes(
        Settings(home=tmp_path / "home", engine_ctx=256), "llamacpp", weights_bytes=1000,
        gguf_file=path,
    )  # fmt: skip
    assert bigger > got, "the KV cache grows with TALKTUAH_ENGINE_CTX"


def test_an_unreadable_gguf_header_falls_back_to_headroom(tmp_path: Path) -> None:
    broken = tmp_path / "m.gguf"
    broken.write_bytes(b"not a gguf file")
    settings = Settings(home=tmp_path / "home")
    got = estimate_bytes(settings, "llamacpp", weights_bytes=5, gguf_file=broken)
    assert got == 5 + CONTEXT_HEADROOM_BYTES + LLAMACPP_RUNTIME_BYTES


def test_transformers_and_other_engines(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    assert estimate_bytes(settings, "transformers", weights_bytes=7) == (
        7 + TRANSFORMERS_RUNTIME_BYTES
    )
    assert estimate_bytes(settings, "vllm", weights_bytes=7) == 7 + CONTEXT_HEADROOM_BYTES


def test_vllm_estimate_is_its_reserved_share_of_the_gpus_it_runs_on(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", vllm_gpu_memory_utilization=0.5)
    totals = [80 * GIB, 80 * GIB, 40 * GIB]
    assert estimate_bytes(settings, "vllm", weights_bytes=10, gpu_totals=totals) == 40 * GIB
    two = settings.model_copy(update={"vllm_tensor_parallel_size": 2})
    assert estimate_bytes(two, "docker", weights_bytes=10, gpu_totals=totals) == 80 * GIB


def test_total_is_ram_or_the_gpus(smi: FakeNvidiaSmi) -> None:
    smi.says(GPUS, "0, 1000\n1, 3000\n")
    assert total_bytes("gpu") == 4000 * MIB
    assert total_bytes("ram") == total_memory()
    smi.fails(GPUS)
    assert total_bytes("gpu") is None


def test_ram_measure_is_the_process_groups_resident_memory() -> None:
    own = int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    assert measure_bytes("ram", os.getpgid(0)) >= own > 0


def test_gpu_measure_counts_the_engines_process_group_only(smi: FakeNvidiaSmi) -> None:
    me = os.getpid()
    smi.says(APPS, f"{me}, 1200\n1, 99999\n")
    assert gpu_process_memory() == [(me, 1200 * MIB), (1, 99999 * MIB)]
    assert measure_bytes("gpu", os.getpgid(0)) == 1200 * MIB
    assert measure_bytes("gpu", 2**22 + 7) == 0, "a group that does not exist holds nothing"


def test_a_vllm_pool_takes_a_percentage_budget_of_gpu_memory(
    smi: FakeNvidiaSmi, tmp_path: Path
) -> None:
    smi.says(GPUS, "0, 1000\n")
    settings = Settings(home=tmp_path / "home", engine="vllm", memory_budget="50%")
    pool = EnginePool(settings, store(settings), Metrics())
    assert pool.memory_kind == "gpu" and pool.budget == 500 * MIB
    install_in_cache(settings.models_dir, "org/m", {"config.json": b"{}"})
    assert pool.estimate("org/m") == int(0.9 * 1000 * MIB)


def test_a_percentage_budget_without_a_readable_total_is_no_budget_and_says_so(
    smi: FakeNvidiaSmi, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    smi.fails(GPUS)
    settings = Settings(home=tmp_path / "home", engine="vllm", memory_budget="75%")
    with caplog.at_level(logging.WARNING, logger="talktuah.engine.pool"):
        pool = EnginePool(settings, store(settings), Metrics())
    assert pool.budget is None
    assert "give it in bytes" in caplog.text


def test_a_cpu_pool_estimates_a_gguf_model_from_its_header(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", engine_ctx=128)
    gguf = gguf_with_shape(**TINY, padding=4096)
    install_in_cache(settings.models_dir, "org/m-GGUF", {"m-Q8_0.gguf": gguf})
    pool = EnginePool(settings, store(settings), Metrics())
    assert pool.memory_kind == "ram"
    path = next(settings.models_dir.rglob("m-Q8_0.gguf"))
    expected = estimate_bytes(settings, "llamacpp", weights_bytes=len(gguf), gguf_file=path)
    assert pool.estimate("org/m-GGUF") == expected
