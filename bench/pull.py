"""Pull throughput: `talktuah pull` vs `hf download` vs `curl`, same loopback hub, same run.

A 1 GiB repo (4 files of 256 MiB; `--quick`: 4 of 32 MiB) served by the test hub
(tests/support/hub.py, the real HF protocol on loopback). Each round runs the three tools one
after the other, in a rotated order, each into a fresh directory (TalkTuah: a fresh
TALKTUAH_HOME and server). Reported: median wall time and MB/s over the rounds, and the API
server's CPU time during the pull (utime+stime from /proc, i.e. progress-tracking and
verification overhead). Target: TalkTuah >= 0.97x the throughput of `hf download`.

    python bench/pull.py [--quick] [--rounds 3]

The hub reads from disk (page cache) and writes with Python in a thread of this process,
which bounds every tool equally: the baseline's absolute numbers are the hub's, not the
network's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

from _common import (
    API_KEY,
    HIGH_LIMITS,
    add_alt_src,
    alt_label,
    alt_src_env,
    clean_env,
    cpu_seconds,
    median,
    parser,
    ratio,
    table,
    venv_bin,
    verdict,
    write_results,
)

from tests.support.hub import Hub, make_files
from tests.support.server import TalkTuahProcess

REPO = "bench/pull-1g"
TARGET = 0.97
MIB = 1024 * 1024


def run_talktuah(
    root: Path, hub: Hub, files: dict[str, int], src: str | None = None
) -> dict[str, Any]:
    home = root / "tt" / "home"
    env = {"HF_ENDPOINT": hub.url, **HIGH_LIMITS, **alt_src_env(src)}
    server = TalkTuahProcess(home, api_key=API_KEY, env=env)
    try:
        server.start()
        assert server.proc is not None
        pid = server.proc.pid
        cli_env = clean_env(TALKTUAH_URL=server.url, PROXY_API_KEY=API_KEY, **alt_src_env(src))
        cpu_before = cpu_seconds(pid)
        started = time.perf_counter()
        done = subprocess.run(
            [venv_bin("talktuah"), "pull", REPO], env=cli_env, capture_output=True, text=True
        )
        wall = time.perf_counter() - started
        cpu = cpu_seconds(pid) - cpu_before
        if done.returncode != 0:
            raise RuntimeError(f"talktuah pull failed: {done.stderr[-2000:]}\n{server.log()}")
        snapshot = next((home / "models" / "hub").glob("models--*/snapshots/*"))
        _check(snapshot, files)
        return {"wall_s": wall, "server_cpu_s": cpu}
    finally:
        server.stop()
        shutil.rmtree(root / "tt", ignore_errors=True)


def run_hf(root: Path, hub: Hub, files: dict[str, int]) -> dict[str, Any]:
    cache = root / "hf" / "cache"
    env = clean_env(HF_ENDPOINT=hub.url, HF_HOME=str(root / "hf" / "home"))
    try:
        started = time.perf_counter()
        done = subprocess.run(
            [venv_bin("hf"), "download", REPO, "--cache-dir", str(cache)],
            env=env, capture_output=True, text=True,
        )  # fmt: skip
        wall = time.perf_counter() - started
        if done.returncode != 0:
            raise RuntimeError(f"hf download failed: {done.stderr[-2000:]}")
        _check(next(cache.glob("models--*/snapshots/*")), files)
        return {"wall_s": wall}
    finally:
        shutil.rmtree(root / "hf", ignore_errors=True)


def run_curl(root: Path, hub: Hub, files: dict[str, int]) -> dict[str, Any]:
    out = root / "curl"
    out.mkdir()
    args = ["curl", "--silent", "--show-error", "--fail", "--location"]
    for name in files:
        args += ["-o", str(out / name), f"{hub.url}/{REPO}/resolve/main/{name}"]
    try:
        started = time.perf_counter()
        done = subprocess.run(args, capture_output=True, text=True)
        wall = time.perf_counter() - started
        if done.returncode != 0:
            raise RuntimeError(f"curl failed: {done.stderr[-2000:]}")
        _check(out, files)
        return {"wall_s": wall}
    finally:
        shutil.rmtree(out, ignore_errors=True)


def _check(directory: Path, files: dict[str, int]) -> None:
    for name, size in files.items():
        got = (directory / name).stat().st_size
        if got != size:
            raise RuntimeError(f"{directory / name}: {got} bytes, expected {size}")


def _default_dir(total: int) -> str | None:
    """/dev/shm when it can hold the hub's copy and one download with room to spare."""
    shm = Path("/dev/shm")
    if shm.is_dir() and shutil.disk_usage(shm).free > 3 * total + 1024 * MIB:
        return str(shm)
    return None


TOOLS = {"talktuah pull": run_talktuah, "hf download": run_hf, "curl": run_curl}


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--rounds", type=int, default=3)
    add_alt_src(p)
    p.add_argument("--file-mib", type=int, default=None, help="size of each of the 4 files")
    p.add_argument(
        "--dir",
        default=None,
        help="where the hub and the downloads live (default: /dev/shm when it has room, so "
        "that the disk's writeback does not add its noise; else the temp dir)",
    )
    args = p.parse_args()
    tools = dict(TOOLS)
    for src in args.alt_src:
        tools[f"talktuah pull ({alt_label(src)})"] = partial(run_talktuah, src=src)
    file_mib = args.file_mib or (32 if args.quick else 256)

    where = args.dir or _default_dir(file_mib * MIB * 4)
    with tempfile.TemporaryDirectory(prefix="bench-pull-", dir=where) as tmp:
        root = Path(tmp)
        hub = Hub(root / "hub")
        # 4 weight shards of random bytes plus the small config/README/tokenizer files
        # (make_files names them; its own randbytes cannot make 256 MiB in one call).
        content = {
            name: os.urandom(file_mib * MIB) if name.endswith(".safetensors") else data
            for name, data in make_files(n_files=4, size=1, seed=7).items()
        }
        hub.add_repo(REPO, content)
        files = {name: len(data) for name, data in content.items()}
        total = sum(files.values())
        del content
        hub.start()
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in tools}
        try:
            names = list(tools)
            for index in range(args.rounds):
                order = names[index % len(names) :] + names[: index % len(names)]
                for name in order:
                    os.sync()  # earlier rounds' dirty pages must not be written back mid-run
                    result = tools[name](root, hub, files)
                    result["mb_s"] = total / result["wall_s"] / 1e6
                    runs[name].append(result)
                    print(f"round {index + 1}: {name:<14} {result['wall_s']:.2f} s", flush=True)
        finally:
            hub.stop()

    summary = {
        name: {
            "median_wall_s": median(r["wall_s"] for r in rs),
            "median_mb_s": median(r["mb_s"] for r in rs),
            "server_cpu_s": median(r["server_cpu_s"] for r in rs)
            if "server_cpu_s" in rs[0]
            else None,
        }
        for name, rs in runs.items()
    }
    hf_mbs = summary["hf download"]["median_mb_s"]
    tt_ratio = ratio(summary["talktuah pull"]["median_mb_s"], hf_mbs)
    rows = []
    for name, s in summary.items():
        cpu = s["server_cpu_s"]
        rows.append(
            [name, s["median_wall_s"], s["median_mb_s"], ratio(s["median_mb_s"], hf_mbs),
             f"{cpu:.2f}" if cpu is not None else "-"]
        )  # fmt: skip
    print()
    print(
        f"{total / MIB:.0f} MiB in {len(files)} files, {args.rounds} rounds, medians "
        f"(files in {where or tempfile.gettempdir()})"
    )
    print(table(["tool", "wall s", "MB/s", "x hf download", "server CPU s"], rows))
    met = tt_ratio >= TARGET
    print(f"target: talktuah >= {TARGET}x hf download: {tt_ratio:.3f} -> {verdict(met)}")
    path = write_results(
        "pull",
        {
            "quick": args.quick,
            "bytes": total,
            "files": files,
            "rounds": args.rounds,
            "dir": where or tempfile.gettempdir(),
            "runs": runs,
            "summary": summary,
            "target": {"ratio_vs_hf_min": TARGET, "ratio": tt_ratio, "met": tt_ratio >= TARGET},
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
