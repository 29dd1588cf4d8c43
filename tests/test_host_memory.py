"""What this machine has: RAM, the GPUs' memory and each GPU process's share (nvidia-smi,
from a stand-in here: tests/support/nvidia_smi.py), a process group's resident memory."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from talktuah.host_memory import (
    MIB,
    gpu_memory_totals,
    gpu_process_memory,
    process_group_rss,
    total_memory,
)

from .support.nvidia_smi import APPS, GPUS, FakeNvidiaSmi, install_nvidia_smi


@pytest.fixture
def smi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeNvidiaSmi:
    return install_nvidia_smi(tmp_path, monkeypatch)


def test_gpu_totals_from_nvidia_smi_honour_cuda_visible_devices(
    smi: FakeNvidiaSmi, monkeypatch: pytest.MonkeyPatch
) -> None:
    smi.says(GPUS, "0, 81559\n1, 40960\n[N/A], 7\n")
    assert gpu_memory_totals() == [81559 * MIB, 40960 * MIB], "a line not two numbers is skipped"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    assert gpu_memory_totals() == [40960 * MIB]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-5f1c,GPU-77aa")
    assert gpu_memory_totals() == [81559 * MIB, 40960 * MIB], "UUIDs: every GPU counts"


def test_no_or_failing_nvidia_smi_means_unknown(
    smi: FakeNvidiaSmi, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    smi.fails(GPUS)
    with caplog.at_level(logging.WARNING, logger="talktuah.host_memory"):
        assert gpu_memory_totals() is None
    assert "NVIDIA-SMI has failed" in caplog.text
    monkeypatch.setenv("PATH", str(smi.where / "empty"))
    assert gpu_memory_totals() is None and gpu_process_memory() == []


def test_ram_measure_is_the_resident_memory_of_the_process_group() -> None:
    mine = process_group_rss(os.getpgid(0))
    own = int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    assert mine >= own > 0


def test_total_memory_is_this_machines_ram_at_most() -> None:
    meminfo = Path("/proc/meminfo").read_text().split("\n", 1)[0]
    assert meminfo.startswith("MemTotal:")
    total = total_memory()
    assert total is not None and 0 < total <= int(meminfo.split()[1]) * 1024


def test_process_memory_rows_that_are_not_two_numbers_are_skipped(smi: FakeNvidiaSmi) -> None:
    smi.says(APPS, "4242, 512\n[Not Supported], [N/A]\n77, 1, 2\n-5, 3\n")
    assert gpu_process_memory() == [(4242, 512 * MIB)]
