"""Responsiveness under load: `GET /api/download-progress` latency while 0, 2 and 4 downloads run.

The test hub (tests/support/hub.py) is throttled per connection so that downloads last the
whole measurement; TalkTuah runs with 4 download workers so that 4 downloads really run at
once (the default of 2 would queue two of them). Each round measures every level, in a rotated
order: start that many downloads of fresh repos, wait until each has moved bytes, send
`--requests` sequential progress requests (keep-alive, like a dashboard polling), then cancel
them. Latency is measured at the client, pooled over rounds. The 0-download level is the
baseline. Target: p99 <= 20 ms at every level.

    python bench/responsiveness.py [--quick] [--rounds 3] [--requests 300]
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from _common import (
    API_KEY,
    HIGH_LIMITS,
    add_alt_src,
    alt_label,
    alt_src_env,
    cpu_seconds,
    median,
    parser,
    percentile,
    table,
    verdict,
    write_results,
)

from tests.support.hub import Hub, make_files
from tests.support.server import TalkTuahProcess

TARGET_P99_MS = 20.0
LEVELS = (0, 2, 4)
MIB = 1024 * 1024


def start_downloads(client: httpx.Client, repos: list[str]) -> list[str]:
    jobs = []
    for repo in repos:
        answer = client.post("/api/download-model", params={"model_id": repo, "auto": "true"})
        answer.raise_for_status()
        jobs.append(answer.json()["job_id"])
    deadline = time.monotonic() + 30
    while True:
        states = [client.get("/api/download-progress", params={"job_id": j}).json() for j in jobs]
        if all(s["status"] == "downloading" and s["bytes_done"] > 0 for s in states):
            return jobs
        if time.monotonic() > deadline:
            raise TimeoutError(f"downloads did not start: {states}")
        time.sleep(0.05)


def cancel_downloads(client: httpx.Client, jobs: list[str]) -> list[str]:
    """Cancel the jobs; return those that were still downloading (they ran the whole time)."""
    still = []
    for job in jobs:
        if client.get(f"/api/downloads/{job}").json()["status"] == "downloading":
            still.append(job)
        client.delete(f"/api/downloads/{job}")
    deadline = time.monotonic() + 30
    while any(client.get(f"/api/downloads/{j}").json()["status"] in ("queued", "downloading")
              for j in jobs):  # fmt: skip
        if time.monotonic() > deadline:
            raise TimeoutError("downloads did not stop after cancel")
        time.sleep(0.05)
    return still


def probe(client: httpx.Client, n: int) -> list[float]:
    latencies = []
    for _ in range(n):
        started = time.perf_counter()
        response = client.get("/api/download-progress")
        latencies.append(time.perf_counter() - started)
        response.raise_for_status()
    return latencies


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--requests", type=int, default=None, help="progress requests per level")
    p.add_argument("--throttle-mbps", type=float, default=None, help="per-connection MB/s")
    add_alt_src(p)
    args = p.parse_args()
    n = args.requests or (100 if args.quick else 300)
    file_mib = 16 if args.quick else 64
    if args.throttle_mbps is None:
        args.throttle_mbps = 8.0 if args.quick else 16.0

    with tempfile.TemporaryDirectory(prefix="bench-resp-") as tmp:
        root = Path(tmp)
        hub = Hub(root / "hub")
        # One content, many repo ids: the hub stores the blobs once.
        content = make_files(n_files=2, size=file_mib * MIB, seed=3)
        servers: dict[str, TalkTuahProcess] = {}
        try:
            hub.start()
            hub.faults.throttle_bps = int(args.throttle_mbps * 1e6)
            env = {"HF_ENDPOINT": hub.url, "TALKTUAH_DOWNLOAD_WORKERS": "4", **HIGH_LIMITS}
            variants = {"talktuah": None} | {
                f"talktuah ({alt_label(src)})": src for src in args.alt_src
            }
            for index, (name, src) in enumerate(variants.items()):
                server = TalkTuahProcess(
                    root / f"home{index}" / "home", api_key=API_KEY, env=env | alt_src_env(src)
                )
                servers[name] = server
                server.start()
            samples: dict[tuple[str, int], list[float]] = {}
            cpu: dict[tuple[str, int], list[float]] = {}
            for round_index in range(args.rounds):
                shift = round_index % len(LEVELS)
                for level in LEVELS[shift:] + LEVELS[:shift]:
                    for name, server in servers.items():
                        assert server.proc is not None
                        repos = [f"bench/resp-{round_index}-{level}-{i}" for i in range(level)]
                        for repo in repos:
                            hub.add_repo(repo, content)
                        with server.client() as client:
                            probe(client, 10)  # warm the connection
                            jobs = start_downloads(client, repos)
                            before = cpu_seconds(server.proc.pid)
                            started = time.perf_counter()
                            latencies = probe(client, n)
                            elapsed = time.perf_counter() - started
                            used = cpu_seconds(server.proc.pid) - before
                            ran = cancel_downloads(client, jobs)
                        if len(ran) != level:
                            print(f"  note: only {len(ran)} of {level} downloads ran throughout")
                        samples.setdefault((name, level), []).extend(latencies)
                        cpu.setdefault((name, level), []).append(used / elapsed)
                        print(
                            f"round {round_index + 1} {name} downloads={level}: "
                            f"p50 {percentile(latencies, 50) * 1000:.2f} ms  "
                            f"p99 {percentile(latencies, 99) * 1000:.2f} ms",
                            flush=True,
                        )
        finally:
            for server in servers.values():
                server.stop()
            hub.stop()

    summary: dict[str, Any] = {}
    rows = []
    for (name, level), latencies in samples.items():
        p50 = percentile(latencies, 50) * 1000
        p99 = percentile(latencies, 99) * 1000
        load = median(cpu[(name, level)])
        summary.setdefault(name, {})[str(level)] = {
            "requests": len(latencies), "p50_ms": p50, "p99_ms": p99,
            "max_ms": max(latencies) * 1000, "server_cpu_share": load,
            "met": p99 <= TARGET_P99_MS,
        }  # fmt: skip
        rows.append([name, level, len(latencies), p50, p99, max(latencies) * 1000, f"{load:.0%}"])
    rows.sort(key=lambda r: (str(r[0]), int(r[1])))
    print()
    print(f"GET /api/download-progress, sequential, {args.throttle_mbps} MB/s per download")
    print(
        table(["server", "downloads", "requests", "p50 ms", "p99 ms", "max ms", "server CPU"], rows)
    )
    for name, levels in summary.items():
        worst = max(v["p99_ms"] for v in levels.values())
        print(f"target: {name} p99 <= {TARGET_P99_MS} ms at every level: worst {worst:.2f} ms -> "
              f"{verdict(worst <= TARGET_P99_MS)}")  # fmt: skip
    path = write_results(
        "responsiveness",
        {"quick": args.quick, "rounds": args.rounds, "requests_per_level": n,
         "throttle_bytes_per_s": int(args.throttle_mbps * 1e6), "file_bytes": file_mib * MIB,
         "summary": summary, "target_p99_ms": TARGET_P99_MS},
    )  # fmt: skip
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
