"""Switch overhead: `POST /api/switch-model` until ready vs starting the engine by hand.

Two tiny random-weight chat models (tests/support/tiny_model.py) sit in one models dir; the
engine is the real `transformers serve`. Each round, in a rotated order:

- TalkTuah: `POST /api/switch-model?model_id=<the other model>`, then poll
  `GET /api/model-loading-status` every 20 ms until it reports `ready` with that model
  (TalkTuah stops the running engine, starts a new one, waits until it serves the model);
- by hand: `transformers serve <model>` with the same arguments and environment TalkTuah gives
  its engine (offline, the same models dir), polling `GET /v1/models` every 20 ms until it
  lists the model; then the same engine is stopped (SIGTERM) and that time is recorded too, so
  "stop the old engine + start the new one", what a switch by hand costs, is shown as well.

Target: TalkTuah's switch <= 0.5 s more than starting the engine alone (medians).

    python bench/switch.py [--quick] [--rounds 3]
"""

from __future__ import annotations

import os
import signal
import subprocess
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
    clean_env,
    free_port,
    median,
    parser,
    table,
    venv_bin,
    verdict,
    write_results,
)

from talktuah.config import Settings
from talktuah.engine.transformers import engine_threads
from tests.support.server import TalkTuahProcess
from tests.support.tiny_model import install_in_cache, tiny_chat_model_files

TARGET_S = 0.5
MODELS = ("bench/switch-a", "bench/switch-b")
POLL = 0.02


def tt_switch(server: TalkTuahProcess, model: str, timeout: float = 120) -> float:
    with server.client() as client:
        started = time.perf_counter()
        answer = client.post("/api/switch-model", params={"model_id": model})
        if answer.status_code != 202:
            raise RuntimeError(f"switch refused: {answer.status_code} {answer.text}")
        while True:
            status = client.get("/api/model-loading-status").json()
            if status["status"] == "ready" and status.get("serving_model") == model:
                return time.perf_counter() - started
            if status["status"] == "failed":
                raise RuntimeError(f"switch failed: {status}")
            if time.perf_counter() - started > timeout:
                raise TimeoutError(f"switch to {model} not ready: {status}")
            time.sleep(POLL)


def engine_by_hand(models_dir: Path, engine_home: Path, model: str) -> tuple[float, float]:
    """Start `transformers serve model` until /v1/models lists it; then stop it. (start, stop)"""
    port = free_port()
    threads = engine_threads(Settings(home=engine_home), {})  # TalkTuah's default, as it does
    env = clean_env(
        HF_HUB_CACHE=str(models_dir), HF_HOME=str(engine_home), HF_HUB_OFFLINE="1",
        DO_NOT_TRACK="1", PYTHONUNBUFFERED="1", OMP_NUM_THREADS=str(threads),
    )  # fmt: skip
    argv = [
        venv_bin("transformers"), "serve", model, "--host", "127.0.0.1", "--port", str(port),
        "--device", "auto", "--dtype", "auto", "--log-level", "info",
    ]  # fmt: skip
    log = (engine_home / "by-hand.log").open("ab")
    started = time.perf_counter()
    proc = subprocess.Popen(
        argv, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}/v1/models"
        with httpx.Client(timeout=5) as client:
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"transformers serve exited {proc.returncode}")
                try:
                    ids = {m.get("id", "").split("@")[0] for m in client.get(url).json()["data"]}
                    if model in ids:
                        break
                except (httpx.HTTPError, ValueError, KeyError):
                    pass
                if time.perf_counter() - started > 120:
                    raise TimeoutError(f"transformers serve never listed {model}")
                time.sleep(POLL)
        start_s = time.perf_counter() - started
        stopping = time.perf_counter()
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        return start_s, time.perf_counter() - stopping
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        log.close()


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--rounds", type=int, default=None)
    add_alt_src(p)
    args = p.parse_args()
    rounds = args.rounds or (2 if args.quick else 3)

    with tempfile.TemporaryDirectory(prefix="bench-switch-") as tmp:
        root = Path(tmp)
        model_files = {m: tiny_chat_model_files(seed=20 + i) for i, m in enumerate(MODELS)}
        variants = {"talktuah": None} | {f"talktuah ({alt_label(s)})": s for s in args.alt_src}
        servers: dict[str, TalkTuahProcess] = {}
        runs: dict[str, list[float]] = {name: [] for name in variants}
        runs |= {"by hand: start": [], "by hand: stop": []}
        by_hand_home = root / "by-hand"
        by_hand_home.mkdir()
        try:
            for index, (name, src) in enumerate(variants.items()):
                home = root / f"tt{index}" / "home"
                for model, files in model_files.items():
                    install_in_cache(home / "models" / "hub", model, files)
                env = {"DEFAULT_MODEL": MODELS[0], **HIGH_LIMITS, **alt_src_env(src)}
                server = TalkTuahProcess(home, api_key=API_KEY, env=env)
                servers[name] = server
                server.start()
                with server.client() as client:  # the first model loads at start
                    deadline = time.monotonic() + 180
                    while client.get("/api/model-loading-status").json()["status"] != "ready":
                        if time.monotonic() > deadline:
                            raise TimeoutError(server.log()[-3000:])
                        time.sleep(0.1)
            models_dir = servers["talktuah"].home / "models" / "hub"
            current = {name: MODELS[0] for name in servers}
            for index in range(rounds):
                steps: list[str] = [*servers, "by hand"]
                shift = index % len(steps)
                for step in steps[shift:] + steps[:shift]:
                    if step == "by hand":
                        start_s, stop_s = engine_by_hand(models_dir, by_hand_home, MODELS[1])
                        runs["by hand: start"].append(start_s)
                        runs["by hand: stop"].append(stop_s)
                        print(f"round {index + 1}: by hand start {start_s:.2f} s, "
                              f"stop {stop_s:.2f} s", flush=True)  # fmt: skip
                    else:
                        target = MODELS[1] if current[step] == MODELS[0] else MODELS[0]
                        elapsed = tt_switch(servers[step], target)
                        current[step] = target
                        runs[step].append(elapsed)
                        print(f"round {index + 1}: {step} switch {elapsed:.2f} s", flush=True)
        finally:
            for server in servers.values():
                server.stop()

    start = median(runs["by hand: start"])
    stop = median(runs["by hand: stop"])
    rows = [
        ["by hand: start engine", start, "-", "-"],
        ["by hand: stop engine", stop, "-", "-"],
        ["by hand: stop + start", start + stop, "-", "-"],
    ]
    summary: dict[str, Any] = {"by_hand_start_s": start, "by_hand_stop_s": stop}
    for name in servers:
        switch = median(runs[name])
        overhead = switch - start
        summary[name] = {
            "switch_s": switch, "overhead_vs_start_s": overhead,
            "overhead_vs_stop_start_s": switch - start - stop, "met": overhead <= TARGET_S,
        }  # fmt: skip
        rows.append([f"{name}: switch-model", switch, f"{overhead:+.2f}",
                     f"{switch - start - stop:+.2f}"])  # fmt: skip
    print()
    print(f"tiny model, transformers serve, medians of {rounds} rounds")
    print(table(["what", "seconds", "overhead vs start", "vs stop+start"], rows))
    for name in servers:
        s = summary[name]
        print(f"target: {name} overhead <= {TARGET_S} s: {s['overhead_vs_start_s']:+.2f} s -> "
              f"{verdict(s['met'])}")  # fmt: skip
    path = write_results(
        "switch", {"quick": args.quick, "rounds": rounds, "runs": runs, "summary": summary,
                   "target_overhead_s": TARGET_S},
    )  # fmt: skip
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
