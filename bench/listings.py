"""Listings with a big history: `/metrics`, `/api/model-status`, `/api/models/local`.

The models dir holds 1,000 cached models (tests/support/tiny_model.py's `install_in_cache`)
and `state.db` holds a finished 10,000-file job for one of them plus 200 small finished jobs,
as a user's server has after a while. Before issue 15 every listing decoded every listed
model's latest job with its planned-file list (`/metrics` is public: anyone could make the
server do it), and each progress tick rewrote that list. Target: `/metrics` and
`/api/model-status` under 50 ms (median) here.

Each server answers the three routes over HTTP (keep-alive, sequential), call by call in
alternation with the baseline when one is given:

    python bench/listings.py [--quick] [--calls 30] [--alt-src /path/to/old-checkout/src]

`--alt-src` runs a second server from another checkout (e.g. `git worktree add /tmp/head
fda8880`, the code before the change) on an identical home in the same rounds; the table
then shows each route's ratio to it.
"""

from __future__ import annotations

import json
import sqlite3
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from _common import (
    API_KEY,
    HIGH_LIMITS,
    add_alt_src,
    alt_label,
    alt_src_env,
    median,
    parser,
    percentile,
    ratio,
    table,
    verdict,
    write_results,
)

from talktuah.scan_cache import RACY_SECONDS
from talktuah.state import MIGRATIONS
from tests.support.server import TalkTuahProcess
from tests.support.tiny_model import install_in_cache

TARGET_MS = 50.0
ROUTES = ("/metrics", "/api/model-status", "/api/models/local")
BIG_JOB_FILES = 10_000
SMALL_JOBS = 200


def model_files(index: int) -> dict[str, bytes]:
    return {
        "config.json": json.dumps({"model_type": "llama", "seed": index}).encode(),
        "model.safetensors": index.to_bytes(4, "little") * 64,
    }


def _job_row(model_id: str, commit: str, files: list[dict[str, Any]], stamp: str) -> dict[str, Any]:
    return {
        "id": uuid.uuid4().hex[:12], "model_id": model_id, "revision": "main",
        "commit_hash": commit, "status": "complete", "bytes_done": 0, "bytes_total": 0,
        "files_done": len(files), "files_total": len(files), "files": json.dumps(files),
        "verified": json.dumps([f["path"] for f in files]), "created_at": stamp,
        "updated_at": stamp, "completed_at": stamp,
    }  # fmt: skip


def populate(home: Path, models: int) -> None:
    """The models dir, and a state.db at schema 3 (the last one every version understands:
    a newer server migrates it on start, as it would a user's)."""
    models_dir = home / "models" / "hub"
    commits = []
    for index in range(models):
        snapshot = install_in_cache(models_dir, f"bench-org/model-{index:04d}", model_files(index))
        commits.append(snapshot.name)
    db = sqlite3.connect(home / "state.db")
    for number, migration in enumerate(MIGRATIONS[:3], start=1):
        migration(db)
        db.execute(f"PRAGMA user_version = {number}")
    big = [{"path": f"shards/part-{i:05d}.safetensors", "size": 4, "sha256": "0" * 64}
           for i in range(BIG_JOB_FILES)]  # fmt: skip
    rows = [_job_row("bench-org/model-0000", commits[0], big, "2026-01-01T00:00:00+00:00")]
    for n in range(SMALL_JOBS):
        index = 1 + n % (models - 1)
        files = [{"path": p, "size": 1, "sha256": None} for p in model_files(index)]
        rows.append(_job_row(f"bench-org/model-{index:04d}", commits[index], files,
                             f"2026-01-02T00:00:{n % 60:02d}+00:00"))  # fmt: skip
    columns = list(rows[0])
    db.executemany(
        f"INSERT INTO download_jobs ({', '.join(columns)}) "
        f"VALUES ({', '.join(':' + c for c in columns)})",
        rows,
    )
    db.commit()
    db.close()


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--calls", type=int, default=None, help="calls of each route per server")
    add_alt_src(p)
    args = p.parse_args()
    calls = args.calls or (10 if args.quick else 30)
    models = 200 if args.quick else 1000
    variants: dict[str, str | None] = {"talktuah": None} | {
        f"baseline ({alt_label(src)})": src for src in args.alt_src
    }
    timings: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-listings-") as tmp:
        servers: dict[str, TalkTuahProcess] = {}
        try:
            for index, (name, src) in enumerate(variants.items()):
                home = Path(tmp) / f"v{index}" / "home"
                home.mkdir(parents=True)
                populate(home, models)
                env = (
                    HIGH_LIMITS
                    | alt_src_env(src)
                    | {"TALKTUAH_ENGINE": "external", "TALKTUAH_ENGINE_URL": "http://127.0.0.1:9"}
                )
                servers[name] = TalkTuahProcess(home, api_key=API_KEY, env=env).start(timeout=60)
            time.sleep(RACY_SECONDS)  # past the window in which a fresh scan is never reused
            clients = {name: server.client() for name, server in servers.items()}
            for name, client in clients.items():  # warm: scan cache, connections, imports
                listed = client.get("/api/models/local").json()["count"]
                if listed != models:
                    raise RuntimeError(f"{name} lists {listed} of {models} models")
            for _ in range(calls):
                for route in ROUTES:
                    for name, client in clients.items():
                        started = time.perf_counter()
                        client.get(route).raise_for_status()
                        timings.setdefault((name, route), []).append(time.perf_counter() - started)
            for client in clients.values():
                client.close()
        finally:
            for server in servers.values():
                server.stop()

    rows = []
    results: dict[str, Any] = {}
    baseline = next((n for n in variants if n != "talktuah"), None)
    for route in ROUTES:
        for name in variants:
            values = timings[(name, route)]
            med = median(values) * 1000
            base = median(timings[(baseline, route)]) * 1000 if baseline else None
            rows.append([route, name, med, percentile(values, 90) * 1000,
                         ratio(med, base) if base else "-"])  # fmt: skip
            results.setdefault(route, {})[name] = {
                "median_ms": med, "p90_ms": percentile(values, 90) * 1000,
                "ratio_vs_baseline": ratio(med, base) if base else None,
            }  # fmt: skip
    print()
    print(f"{models} cached models, a {BIG_JOB_FILES}-file job and {SMALL_JOBS} small jobs in "
          f"history; {calls} alternating calls per route, medians")  # fmt: skip
    print(table(["route", "server", "median ms", "p90 ms", "x baseline"], rows))
    verdicts = {}
    for route in ROUTES[:2]:
        med = results[route]["talktuah"]["median_ms"]
        verdicts[route] = {"median_ms": med, "met": med < TARGET_MS}
        print(f"target: {route} < {TARGET_MS:.0f} ms: {med:.1f} ms -> {verdict(med < TARGET_MS)}")
    path = write_results(
        "listings",
        {"quick": args.quick, "calls": calls, "models": models, "big_job_files": BIG_JOB_FILES,
         "results": results, "target_ms": TARGET_MS, "verdicts": verdicts},
    )  # fmt: skip
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
