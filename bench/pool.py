"""The engine pool's costs on llama.cpp (issue 18), each against its own baseline in one run.

1. Added latency of a resident model with two loaded: TalkTuah serving the default model
   `bench/a-GGUF` with `bench/b-GGUF` loaded beside it, against A's own llama-server port,
   in alternating non-streamed chats of one token on kept-alive connections; the same with A
   alone first, so that what the second model adds (the pool's hot path is one dict lookup)
   is told apart from what the proxy always adds. Goal: p50 added <= 1 ms. In the same
   rounds, bench/minimal_proxy.py (uvicorn + TalkTuah's engine client forwarding the bytes:
   no auth, routing, rewriting, metrics or log) in front of A's same port: the floor of the
   stack TalkTuah is built on, so that "added" splits into the stack's and TalkTuah's own.
2. Load overhead beyond the engine's own cold start: B unloaded, then one request naming it
   (load on demand + the answer), against the same llama-server argv launched by hand
   (launch -> /health 200 with the model listed -> the same request). Goal: median overhead
   <= 0.3 s. Rounds alternate the two.

    python bench/pool.py [--rounds 300] [--loads 7] [--storage F32|F16|Q8_0]

The models are tiny_gguf.py's tiny Llama (ready in well under a second), so the engine's
own work is small and what TalkTuah adds shows.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from _common import (
    API_KEY,
    HIGH_LIMITS,
    free_port,
    median,
    parser,
    percentile,
    stop_process,
    table,
    verdict,
    write_results,
)

from tests.support.server import TalkTuahProcess
from tests.support.tiny_gguf import tiny_gguf_bytes
from tests.support.tiny_model import install_in_cache

A, B = "bench/a-GGUF", "bench/b-GGUF"
BODY = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
GOAL_ADDED_MS = 1.0
GOAL_LOAD_OVERHEAD_S = 0.3


def pids(home: Path) -> dict[str, dict[str, Any]]:
    """Model file stem -> the pidfile record of the llama-server serving it."""
    found = {}
    for pidfile in (home / "engine").glob("engine*.pid"):
        record = json.loads(pidfile.read_text())
        argv = record["argv"]
        begin = argv.index("talktuah.engine.llamacpp_server")
        found[Path(argv[argv.index("-m", begin) + 1]).name.split("-")[0]] = record
    return found


def chat(client: httpx.Client, url: str, model: str, headers: dict[str, str]) -> float:
    started = time.perf_counter()
    answer = client.post(f"{url}/v1/chat/completions", json=BODY | {"model": model},
                         headers=headers)  # fmt: skip
    answer.raise_for_status()
    return time.perf_counter() - started


def latency_part(server: TalkTuahProcess, floor: str, rounds: int) -> dict[str, list[float]]:
    """A's chats through TalkTuah, direct and through the floor, alternating: first with A
    alone in the pool, then with B loaded beside it (what the pool adds is the difference
    of the two)."""
    headers = {"Authorization": f"Bearer {API_KEY}"}
    direct = a_url(server)
    out: dict[str, list[float]] = {}
    with httpx.Client(timeout=30) as tt, httpx.Client(timeout=30) as raw, \
            httpx.Client(timeout=30) as bare:  # fmt: skip
        for loaded in ("one loaded", "two loaded"):
            if loaded == "two loaded":
                chat(tt, server.url, B, headers)  # B loads beside A
            for _ in range(10):  # warm-up: connections, first-call costs
                chat(tt, server.url, A, headers)
                chat(raw, direct, A, {})
                chat(bare, floor, A, {})
            tt_side, direct_side, floor_side = (
                out[f"talktuah, {loaded}"], out[f"direct, {loaded}"], out[f"floor, {loaded}"]
            ) = [], [], []  # fmt: skip
            for _ in range(rounds):
                tt_side.append(chat(tt, server.url, A, headers))
                direct_side.append(chat(raw, direct, A, {}))
                floor_side.append(chat(bare, floor, A, {}))
    return out


def a_url(server: TalkTuahProcess) -> str:
    """A's own llama-server, as TalkTuah launched it."""
    argv = pids(server.home)["a"]["argv"]
    return f"http://127.0.0.1:{argv[argv.index('--port') + 1]}"


def start_floor(upstream: str, root: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    script = Path(__file__).with_name("minimal_proxy.py")
    with (root / "floor.log").open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, str(script), "--port", str(port), "--upstream", upstream],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.post(f"{url}/v1/chat/completions", json=BODY | {"model": A}, timeout=5)
            return proc, url
        except httpx.TransportError:
            time.sleep(0.05)
    stop_process(proc)
    raise TimeoutError("the floor proxy did not start")


def ready(url: str, model: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.perf_counter() + timeout
    with httpx.Client(timeout=2) as client:
        while time.perf_counter() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"engine exited {proc.returncode}")
            try:
                if client.get(f"{url}/health").status_code == 200:
                    listed = client.get(f"{url}/v1/models").json()["data"]
                    if any(str(m["id"]).split("@")[0] == model for m in listed):
                        return
            except (httpx.TransportError, KeyError, ValueError):
                pass
            time.sleep(0.05)  # TalkTuah's own load poll (LOAD_POLL_SECONDS)
    raise TimeoutError("engine not ready")


def by_hand(argv: list[str], model: str, root: Path) -> tuple[float, float]:
    """(launch to ready, launch to the first answer) of B's llama-server, run by hand."""
    port = free_port()
    argv = list(argv)
    argv[argv.index("--port") + 1] = str(port)
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    with (root / "by-hand.log").open("ab") as log:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        ready(url, model, proc)
        up = time.perf_counter() - started
        with httpx.Client(timeout=30) as client:
            chat(client, url, model, {})
        return up, time.perf_counter() - started
    finally:
        stop_process(proc)


def on_demand(server: TalkTuahProcess) -> float:
    """Unload B, then time one request naming it: load on demand + the answer."""
    headers = {"Authorization": f"Bearer {API_KEY}"}
    with httpx.Client(timeout=60, headers=headers) as client:
        client.post(f"{server.url}/api/unload-model", params={"model_id": B})
        while any(m["model"] == B for m in client.get(f"{server.url}/api/ps").json()["models"]):
            time.sleep(0.05)
    with httpx.Client(timeout=60) as client:
        return chat(client, server.url, B, headers)


def load_part(server: TalkTuahProcess, loads: int, root: Path) -> dict[str, list[float]]:
    argv = pids(server.home)["b"]["argv"]
    out: dict[str, list[float]] = {"talktuah": [], "by_hand": [], "by_hand_ready": []}
    on_demand(server)  # warm-up: page cache, first-load costs
    by_hand(argv, B, root)
    for _ in range(loads):
        out["talktuah"].append(on_demand(server))
        up, answered = by_hand(argv, B, root)
        out["by_hand_ready"].append(up)
        out["by_hand"].append(answered)
    return out


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--rounds", type=int, default=300, help="Chats per side, alternating")
    p.add_argument("--loads", type=int, default=7, help="Loads per side, alternating")
    p.add_argument("--storage", default="F32", choices=("F32", "F16", "Q8_0"))
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-pool-") as tmp:
        root = Path(tmp)
        home = root / "home"
        for seed, model in ((61, A), (62, B)):
            name = model.split("/")[1].split("-")[0]
            gguf = tiny_gguf_bytes(seed, storage=args.storage)
            install_in_cache(home / "models" / "hub", model, {f"{name}-Q8_0.gguf": gguf})
        env = HIGH_LIMITS | {"DEFAULT_MODEL": A, "TALKTUAH_ENGINE_THREADS": "1",
                             "TALKTUAH_KEEP_ALIVE": "-1"}  # fmt: skip
        server = TalkTuahProcess(home, api_key=API_KEY, env=env).start(timeout=60)
        try:
            server.wait_engine(A, timeout=120)
            floor, floor_url = start_floor(a_url(server), root)
            try:
                latency = latency_part(server, floor_url, args.rounds)
            finally:
                stop_process(floor)
            loads = load_part(server, args.loads, root)
        finally:
            server.stop()

    ms = {k: [v * 1000 for v in vs] for k, vs in latency.items()}

    def added(loaded: str, p: float, by: str = "talktuah", over: str = "direct") -> float:
        return percentile(ms[f"{by}, {loaded}"], p) - percentile(ms[f"{over}, {loaded}"], p)

    added_p50 = added("two loaded", 50)
    pool_p50 = added_p50 - added("one loaded", 50)
    overhead = median(loads["talktuah"]) - median(loads["by_hand"])
    print(table(
        ["chat to A (1 token)", "p50 ms", "p99 ms"],
        [[name, percentile(v, 50), percentile(v, 99)] for name, v in ms.items()]
        + [[f"added by TalkTuah, {n}", added(n, 50), added(n, 99)]
           for n in ("one loaded", "two loaded")]
        + [["added by the second model", pool_p50,
            added("two loaded", 99) - added("one loaded", 99)]]
        + [["added by the floor (uvicorn + client), two loaded",
            added("two loaded", 50, "floor"), added("two loaded", 99, "floor")],
           ["TalkTuah over the floor, two loaded",
            added("two loaded", 50, over="floor"), added("two loaded", 99, over="floor")]],
    ))  # fmt: skip
    print()
    print(table(
        ["load of B", "median s", "min s"],
        [["TalkTuah: on-demand load + answer", median(loads["talktuah"]), min(loads["talktuah"])],
         ["by hand: launch + ready + answer", median(loads["by_hand"]), min(loads["by_hand"])],
         ["by hand: launch + ready", median(loads["by_hand_ready"]), min(loads["by_hand_ready"])],
         ["overhead beyond the engine", overhead, min(loads["talktuah"]) - min(loads["by_hand"])]],
    ))  # fmt: skip
    print()
    print(f"added p50 (two loaded, over direct) <= {GOAL_ADDED_MS} ms: "
          f"{verdict(added_p50 <= GOAL_ADDED_MS)}")  # fmt: skip
    print(f"added p50 by the second model <= {GOAL_ADDED_MS} ms: "
          f"{verdict(pool_p50 <= GOAL_ADDED_MS)}")  # fmt: skip
    print(f"load overhead <= {GOAL_LOAD_OVERHEAD_S} s: {verdict(overhead <= GOAL_LOAD_OVERHEAD_S)}")
    write_results("pool", {
        "args": vars(args), "latency_ms": ms, "loads_s": loads,
        "added_p50_ms": added_p50, "pool_added_p50_ms": pool_p50, "load_overhead_s": overhead,
        "floor_added_p50_ms": added("two loaded", 50, "floor"),
    })  # fmt: skip


if __name__ == "__main__":
    main()
