"""Shared helpers for the bench scripts: paths, statistics, /proc readings, tables, JSON.

Every benchmark runs TalkTuah and its baseline side by side in one run, in interleaved rounds,
and reports medians and ratios: on a small shared machine absolute numbers drift, ratios hold.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

API_KEY = "tt-bench-key-0123456789abcdefghijklmnop"
"""The admin key every bench server runs with (loopback only)."""

HIGH_LIMITS = {
    "TALKTUAH_RATE_LIMIT": "1000000/minute",
    "TALKTUAH_PROXY_RATE_LIMIT": "1000000/minute",
    "TALKTUAH_MAX_STREAMS": "1000",
}
"""Per-key limits far above any load a bench sends, so no request is answered 429."""

CLK_TCK = os.sysconf("SC_CLK_TCK")


def parser(doc: str | None) -> argparse.ArgumentParser:
    """An argument parser with the `--quick` flag every bench script has."""
    first = (doc or "").strip().splitlines()[0] if doc else ""
    p = argparse.ArgumentParser(description=first)
    p.add_argument("--quick", action="store_true", help="a smaller, faster run (smoke test)")
    return p


def add_alt_src(p: argparse.ArgumentParser) -> None:
    """`--alt-src DIR` (repeatable): also run TalkTuah from another checkout's `src/` (a
    proposed fix), side by side with this one in the same rounds."""
    p.add_argument(
        "--alt-src",
        metavar="DIR",
        action="append",
        default=[],
        help="also measure TalkTuah imported from DIR (e.g. a patched checkout's src/)",
    )


def alt_label(src: str) -> str:
    """A short name for an alternative checkout: the directory above `src/`, or `src` itself."""
    path = Path(src).resolve()
    return path.parent.name if path.name == "src" else path.name


def alt_src_env(src: str | None) -> dict[str, str]:
    """Environment that makes a child `python -m talktuah` import the package from `src`."""
    if not src:
        return {}
    return {"PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")]))}


# -- statistics ------------------------------------------------------------------------------


def median(values: Iterable[float]) -> float:
    data = list(values)
    return statistics.median(data) if data else float("nan")


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0-100) with linear interpolation between closest ranks."""
    data = sorted(values)
    if not data:
        return float("nan")
    if len(data) == 1:
        return data[0]
    rank = (len(data) - 1) * p / 100
    low = int(rank)
    high = min(low + 1, len(data) - 1)
    return data[low] + (data[high] - data[low]) * (rank - low)


def ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


# -- processes -------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process, in seconds (from /proc/<pid>/stat)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_mb(pid: int) -> float:
    """Resident set size of one process in MiB (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, timeout: float = 30, proc: subprocess.Popen[Any] | None = None) -> None:
    """Poll `url` until it answers 2xx (or `proc` exits, or the time is up)."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process for {url} exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1).is_success:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{url} not up after {timeout}s")


def launch(argv: list[str], ready_url: str, **popen: Any) -> subprocess.Popen[bytes]:
    """Start `argv` and wait until `ready_url` answers; never leaves it running on failure."""
    proc: subprocess.Popen[bytes] = subprocess.Popen(argv, **popen)
    try:
        wait_http(ready_url, proc=proc)
    except BaseException:
        stop_process(proc)
        raise
    return proc


def stop_process(proc: subprocess.Popen[Any] | None, timeout: float = 10) -> None:
    """SIGTERM, then SIGKILL after `timeout`; a no-op for a process that already ended."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without HF_/TALKTUAH_ variables or keys, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TALKTUAH_"))}
    env.pop("PROXY_API_KEY", None)
    env.pop("DEFAULT_MODEL", None)
    env["HF_HUB_DISABLE_TELEMETRY"] = "1"
    env.update(extra)
    return env


def venv_bin(name: str) -> str:
    """An executable beside this interpreter (the project's venv), else from PATH."""
    beside = Path(sys.executable).with_name(name)
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name} not found beside {sys.executable} or on PATH")
    return found


# -- output ----------------------------------------------------------------------------------


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table, right-aligned numbers, that reads the same in a terminal and a doc."""
    cells = [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    lines = [" | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("-|-".join("-" * w for w in widths))
    for row in cells:
        lines.append(" | ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)))
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if value != value:  # NaN
            return "n/a"
        if abs(value) >= 100:
            return f"{value:.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}" if abs(value) >= 1 else f"{value:.3f}"
    return str(value)


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kb = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kb = int(line.split()[1])
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "load_avg": [round(x, 2) for x in os.getloadavg()],
    }


def write_results(name: str, data: dict[str, Any]) -> Path:
    """Write `bench/results/<name>.json` with the machine and the time of the run."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {
        "benchmark": name,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        **data,
    }
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return path
