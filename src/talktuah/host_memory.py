"""What this machine has and what its processes hold: RAM (a container's cgroup limit
included), the GPUs' memory and each GPU process's share (nvidia-smi), the resident memory
of a process group.

Only the standard library: nvidia-smi is run, not linked (no NVML binding to install), and
its output is parsed strictly, since a driver's warnings or "[N/A]" share its lines.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

logger = logging.getLogger(__name__)

MIB = 2**20
_NVIDIA_SMI_TIMEOUT = 5.0

_CGROUP_LIMITS = (
    Path("/sys/fs/cgroup/memory.max"),  # cgroup v2
    Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"),  # cgroup v1
)


def total_memory() -> int | None:
    """RAM this process may use: MemTotal (or sysconf), lowered by a cgroup limit."""
    total = _meminfo_total()
    if total is None:
        try:
            total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            total = None
    for path in _CGROUP_LIMITS:
        try:
            text = path.read_text().strip()
        except OSError:
            continue
        if text.isdigit() and (total is None or int(text) < total):
            total = int(text)  # "max" (v2) or a huge number (v1) means no limit
    return total


def _meminfo_total() -> int | None:
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def process_group_members(pgid: int) -> list[int]:
    """Pids of every live process in the group `pgid`."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[-1].split()
            if int(fields[2]) == pgid:
                members.append(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue
    return members


def process_group_rss(pgid: int) -> int:
    """Resident bytes of every process in the group `pgid`; 0 when none is there."""
    total = 0
    page = os.sysconf("SC_PAGE_SIZE")
    for pid in process_group_members(pgid):
        try:
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * page
        except (OSError, ValueError, IndexError):
            continue
    return total


def gpu_memory_totals() -> list[int] | None:
    """Bytes of memory of each GPU this process may use (CUDA_VISIBLE_DEVICES honoured),
    from nvidia-smi; None without it."""
    rows = _nvidia_smi("--query-gpu=index,memory.total")
    if rows is None:
        return None
    totals = {index: mib * MIB for index, mib in rows}
    visible = _visible_indices(os.environ.get("CUDA_VISIBLE_DEVICES"))
    if visible is not None:
        totals = {i: b for i, b in totals.items() if i in visible}
    return [totals[i] for i in sorted(totals)] or None


def gpu_process_memory() -> list[tuple[int, int]]:
    """(pid, bytes) of every process nvidia-smi sees using a GPU; [] without it.

    A process in another PID namespace (a container) shows a pid of the host or none at
    all, so an engine in docker is not measured here and keeps its estimate.
    """
    rows = _nvidia_smi("--query-compute-apps=pid,used_memory")
    return [(pid, mib * MIB) for pid, mib in rows or []]


def _visible_indices(value: str | None) -> set[int] | None:
    """CUDA_VISIBLE_DEVICES as GPU indices; None when unset or given as UUIDs."""
    if value is None:
        return None
    parts = [p.strip() for p in value.split(",") if p.strip()]
    if not all(p.isdigit() for p in parts):
        return None
    return {int(p) for p in parts}


def _nvidia_smi(query: str) -> list[tuple[int, int]] | None:
    """Rows of two integers from `nvidia-smi <query> --format=csv,noheader,nounits`.

    Lines that are not two integers (a "[N/A]", a warning) are skipped, not trusted.
    """
    executable = shutil.which("nvidia-smi")
    if executable is None:
        return None
    try:
        done = subprocess.run(
            [executable, query, "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=_NVIDIA_SMI_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        logger.warning("nvidia-smi could not be run: %s", exc)
        return None
    if done.returncode != 0:
        logger.warning("nvidia-smi %s failed: %s", query, done.stderr.strip()[:200])
        return None
    return _pairs(done.stdout.splitlines())


def _pairs(lines: Sequence[str]) -> list[tuple[int, int]]:
    pairs = []
    for line in lines:
        fields = [f.strip() for f in line.split(",")]
        if len(fields) == 2 and all(f.isdigit() for f in fields):
            pairs.append((int(fields[0]), int(fields[1])))
    return pairs
