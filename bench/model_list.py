"""Scale of the model list: `GET /api/models/local` vs `scan_cache_dir` called directly.

For 10, 100 and 500 cached models (small generated repos laid out with
tests/support/tiny_model.py's `install_in_cache`: config, weights, tokenizer, one snapshot,
`refs/main`), one TalkTuah server per size answers `/api/models/local` over HTTP (keep-alive,
sequential), and this process calls `huggingface_hub.scan_cache_dir` on the same directory,
the raw cost of walking the cache that any listing pays. The two alternate call by call, so
both see the same machine; medians are compared. Target: TalkTuah <= 1.2x raw.

    python bench/model_list.py [--quick] [--calls 30]

What TalkTuah adds on top of the scan: per-model completeness (the latest download job from
SQLite, partial files, shard indexes), the active flag, JSON and HTTP. What it saves: the
server reuses its last scan while the directories' fingerprint is unchanged
(src/talktuah/scan_cache.py), so the row "talktuah, after a change" — the same server
called right after the models dir's mtime moved — shows the cost when it must rescan.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
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
from huggingface_hub import scan_cache_dir

from talktuah.scan_cache import RACY_SECONDS
from tests.support.server import TalkTuahProcess
from tests.support.tiny_model import install_in_cache

TARGET = 1.2
#: The same server, called right after the models dir changed: no reuse of its last scan.
CHANGED = "talktuah, after a change"
SIZES = (10, 100, 500)


def model_files(index: int) -> dict[str, bytes]:
    """A small model-shaped repo, unique per index (so blobs differ, as in a real cache)."""
    return {
        "config.json": json.dumps({"model_type": "llama", "seed": index}).encode(),
        "tokenizer.json": json.dumps({"version": "1.0", "id": index}).encode(),
        "model.safetensors": index.to_bytes(4, "little") * 256,
    }


def populate(models_dir: Path, count: int) -> None:
    for index in range(count):
        install_in_cache(models_dir, f"bench-org/model-{index:04d}", model_files(index))


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--calls", type=int, default=None, help="calls of each kind per size")
    add_alt_src(p)
    args = p.parse_args()
    calls = args.calls or (10 if args.quick else 30)
    sizes = (10, 100) if args.quick else SIZES

    results: dict[str, Any] = {}
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-list-") as tmp:
        root = Path(tmp)
        for size in sizes:
            variants = {"talktuah": None} | {
                f"talktuah ({alt_label(src)})": src for src in args.alt_src
            }
            servers: dict[str, TalkTuahProcess] = {}
            try:
                for index, (name, src) in enumerate(variants.items()):
                    home = root / f"n{size}-{index}" / "home"
                    populate(home / "models" / "hub", size)
                    servers[name] = TalkTuahProcess(
                        home, api_key=API_KEY, env=HIGH_LIMITS | alt_src_env(src)
                    )
                    servers[name].start()
                models_dir = servers["talktuah"].home / "models" / "hub"
                # A cache written less than RACY_SECONDS ago is never reused (coarse-clock
                # safety): measure the steady state a user's server is in, not those seconds.
                time.sleep(RACY_SECONDS)
                timings: dict[str, list[float]] = {name: [] for name in [*servers, "raw scan"]}
                clients = {name: server.client() for name, server in servers.items()}
                for name, client in clients.items():  # warm: caches, connections, imports
                    answer = client.get("/api/models/local")
                    answer.raise_for_status()
                    if answer.json()["count"] != size:
                        raise RuntimeError(f"{name} lists {answer.json()['count']} of {size}")
                scan_cache_dir(models_dir)
                timings[CHANGED] = []
                an_hour_ago = time.time_ns() - 3600 * 10**9
                for call in range(calls):
                    for name, client in clients.items():
                        started = time.perf_counter()
                        client.get("/api/models/local").raise_for_status()
                        timings[name].append(time.perf_counter() - started)
                    # A new (old, so not racy) mtime on the models dir: the server must rescan.
                    stamp = an_hour_ago + call * 10**9
                    os.utime(models_dir, ns=(stamp, stamp))
                    started = time.perf_counter()
                    clients["talktuah"].get("/api/models/local").raise_for_status()
                    timings[CHANGED].append(time.perf_counter() - started)
                    started = time.perf_counter()
                    info = scan_cache_dir(models_dir)
                    timings["raw scan"].append(time.perf_counter() - started)
                    assert len(info.repos) == size
                for client in clients.values():
                    client.close()
            finally:
                for server in servers.values():
                    server.stop()
            raw = median(timings["raw scan"])
            per: dict[str, Any] = {}
            for name, values in timings.items():
                med = median(values)
                per[name] = {
                    "median_ms": med * 1000, "p90_ms": percentile(values, 90) * 1000,
                    "ratio_vs_raw": ratio(med, raw),
                }  # fmt: skip
                rows.append([size, name, med * 1000, percentile(values, 90) * 1000,
                             ratio(med, raw)])  # fmt: skip
            results[str(size)] = per
            line = ", ".join(f"{name} {v['median_ms']:.1f} ms" for name, v in per.items())
            print(f"{size} models: {line}", flush=True)

    print()
    print(f"/api/models/local vs scan_cache_dir, {calls} alternating calls, medians")
    print(table(["models", "what", "median ms", "p90 ms", "x raw"], rows))
    verdicts = {}
    for name in results[str(sizes[0])]:
        if name in ("raw scan", CHANGED):
            continue
        worst = max(results[str(size)][name]["ratio_vs_raw"] for size in sizes)
        verdicts[name] = {"worst_ratio": worst, "met": worst <= TARGET}
        print(f"target: {name} <= {TARGET}x raw at every size: worst {worst:.2f}x -> "
              f"{verdict(worst <= TARGET)}")  # fmt: skip
    path = write_results(
        "model_list",
        {"quick": args.quick, "calls": calls, "sizes": list(sizes), "results": results,
         "target_ratio_max": TARGET, "verdicts": verdicts},
    )  # fmt: skip
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
