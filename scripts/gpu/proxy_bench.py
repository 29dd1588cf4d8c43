#!/usr/bin/env python3
"""Proxy overhead with a real vLLM on a GPU: streamed chat through TalkTuah vs straight to vLLM.

CI (two CPUs, no GPU) measures the proxy against a stand-in upstream and a CPU engine
(bench/proxy.py). This script does the same against the engine users run on a GPU box:

1. builds vllm_check.py's tiny random Llama (head_dim 64, so FlashAttention 3 works) unless
   `--model-dir` holds one, and lays it out in TalkTuah's models dir;
2. starts the real `talktuah serve` with `TALKTUAH_ENGINE=vllm`, `DEFAULT_MODEL` set to that
   model, vLLM's default mode (torch.compile + CUDA graphs; `--engine-arg --enforce-eager`
   for eager), `TALKTUAH_VLLM_GPU_MEMORY_UTILIZATION=0.25`, `TALKTUAH_VLLM_MAX_MODEL_LEN=512`
   and bench/_common.py's HIGH_LIMITS (no request is ever answered 429);
3. for each `--max-tokens` value: sizes each run from a short calibration against vLLM
   (about `--seconds` per run), then sends streamed `POST /v1/chat/completions` at
   concurrency 1, 16 and 64 to TalkTuah's `/v1` and straight to the vLLM process TalkTuah
   launched (its port from `$TALKTUAH_HOME/engine/engine.pid`), in interleaved rounds with
   a rotated order, using bench/proxy.py's load generator and statistics;
4. prints bench/proxy.py's tables and verdicts plus a markdown table, writes every number
   to JSON, stops TalkTuah and makes sure no vLLM process is left.

"proxy CPU us/req" is the user + system CPU time of the `talktuah serve` process alone (not
its children: vLLM is one) per request, from /proc. Targets (from the issue): added TTFB
p50 <= 1 ms, p99 <= 5 ms, req/s >= 0.9x direct.

    python scripts/gpu/proxy_bench.py [--max-tokens 16 --max-tokens 128] [--rounds 4]

`--vllm-python`, `--vllm-site`, `--vllm-env` work as in vllm_check.py (a wrapper runs vLLM
from its own site dir). The JSON goes to `--out`, else `$OUT/proxy_bench.json` when `$OUT`
is set, else `bench/results/proxy_gpu.json`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
for path in (REPO / "bench", REPO, HERE):  # bench/proxy.py, tests.support, vllm_check
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from _common import API_KEY, HIGH_LIMITS, machine, median  # noqa: E402
from proxy import (  # noqa: E402
    CONCURRENCY,
    TARGET_P50_MS,
    TARGET_P99_MS,
    TARGET_RPS,
    Target,
    engine_port,
    measure,
    print_summary,
    print_verdicts,
    run_async,
    summarize,
    verdicts,
)
from vllm_check import MODEL_ID, alive, engine_tree, nvidia_smi  # noqa: E402

from tests.support.server import TalkTuahProcess  # noqa: E402
from tests.support.tiny_model import install_in_cache  # noqa: E402

#: The smallest and largest number of requests one (round, concurrency, target) run sends.
MIN_COUNT = {1: 10, 16: 64, 64: 192}
MAX_COUNT = 20000
#: Calibration: requests per concurrency for the one direct-only round that sizes the runs.
CALIBRATION = {1: 8, 16: 64, 64: 256}


def versions(python: str, site: Path | None) -> dict[str, Any]:
    """Package versions on vLLM's side (its own interpreter / site dir), without importing."""
    probe = (
        "import importlib.metadata as m, json, sys\n"
        "out = {'python': sys.version.split()[0]}\n"
        "for name in ('vllm', 'torch', 'transformers', 'huggingface_hub', 'flashinfer-python'):\n"
        "    try: out[name] = m.version(name)\n"
        "    except m.PackageNotFoundError: out[name] = None\n"
        "print(json.dumps(out))\n"
    )
    env = dict(os.environ)
    if site is not None:
        env["PYTHONPATH"] = str(site)
    done = subprocess.run(
        [python, "-c", probe], env=env, capture_output=True, text=True, timeout=60
    )
    if done.returncode != 0:
        return {"error": done.stderr[-2000:]}
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def talktuah_side() -> dict[str, Any]:
    """What TalkTuah's own process imports (the same interpreter and PYTHONPATH as this one)."""
    out: dict[str, Any] = {"python": sys.version.split()[0], "executable": sys.executable}
    for name in ("talktuah", "fastapi", "starlette", "uvicorn", "httpx", "httptools", "uvloop",
                 "huggingface_hub"):  # fmt: skip
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def write_wrapper(work: Path, python: str, site: Path | None, env: list[list[str]]) -> str:
    """vllm_check.py's wrapper: vLLM's CLI from its own interpreter, PYTHONPATH *set*."""
    wrapper = work / "bin" / "vllm"
    wrapper.parent.mkdir(parents=True, exist_ok=True)
    lines = ["#!/bin/sh", "# proxy_bench.py: vLLM from its own environment."]
    if site is not None:
        lines.append(f"export PYTHONPATH={shlex.quote(str(site))}")
    for name, value in env:
        lines.append(f"export {name}={shlex.quote(value)}")
    lines.append(f'exec {shlex.quote(python)} -m vllm.entrypoints.cli.main "$@"')
    wrapper.write_text("\n".join(lines) + "\n")
    wrapper.chmod(0o755)
    return str(wrapper)


def model_files(args: argparse.Namespace, work: Path) -> dict[str, bytes]:
    model_dir = args.model_dir or work / "model"
    if not (Path(model_dir) / "config.json").exists():
        env = dict(os.environ)
        if args.builder_pythonpath:
            env["PYTHONPATH"] = args.builder_pythonpath
        else:
            env.pop("PYTHONPATH", None)  # the image's torch/transformers, not TalkTuah's site
        done = subprocess.run(
            [args.builder_python, str(HERE / "vllm_check.py"), "--build-model", str(model_dir)],
            env=env, capture_output=True, text=True, timeout=300, cwd=REPO,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"building the model failed:\n{done.stderr[-3000:]}")
    files = {p.name: p.read_bytes() for p in sorted(Path(model_dir).iterdir()) if p.is_file()}
    config = json.loads(files["config.json"])
    head_dim = config["hidden_size"] // config["num_attention_heads"]
    if head_dim != 64:
        raise RuntimeError(f"{model_dir}: head_dim {head_dim}, not 64")
    return files


def start(args: argparse.Namespace, work: Path, home: Path) -> TalkTuahProcess:
    """`talktuah serve` with the vllm engine and DEFAULT_MODEL, up to the engine being ready."""
    env = {
        **HIGH_LIMITS,
        "PYTHONPATH": os.pathsep.join(
            p for p in [str(REPO / "src"), os.environ.get("PYTHONPATH", "")] if p
        ),
        "DEFAULT_MODEL": MODEL_ID,
        "TALKTUAH_ENGINE": "vllm",
        "TALKTUAH_VLLM_GPU_MEMORY_UTILIZATION": str(args.gpu_memory_utilization),
        "TALKTUAH_VLLM_MAX_MODEL_LEN": str(args.max_model_len),
        "TALKTUAH_ENGINE_EXTRA_ARGS": json.dumps(args.engine_arg),
        "TALKTUAH_ENGINE_START_TIMEOUT": str(args.engine_timeout),
        "TALKTUAH_ENGINE_STOP_TIMEOUT": "30",
    }
    if args.engine_executable:
        env["TALKTUAH_ENGINE_EXECUTABLE"] = args.engine_executable
    server = TalkTuahProcess(home, api_key=API_KEY, env=env)
    server.log_path = work / "talktuah.log"
    server.start(timeout=60)
    started = time.monotonic()
    last = ""
    with server.client() as client:
        while True:
            status = client.get("/api/model-loading-status").json()
            phase = f"{status['status']}/{(status.get('loading') or {}).get('phase')}"
            if phase != last:
                print(f"  +{time.monotonic() - started:6.1f} s  {phase}", flush=True)
                last = phase
            if status["status"] == "ready" and status.get("serving_model") == MODEL_ID:
                return server
            waited = time.monotonic() - started
            stuck = status["status"] == "stopped" and waited > 10  # e.g. model not found
            if status["status"] == "failed" or stuck or waited > args.engine_timeout:
                tail = "\n".join(status.get("log_tail") or [])
                server.stop(timeout=60)
                raise RuntimeError(f"engine not ready: {status}\n{tail}")
            time.sleep(0.25)


def completion_tokens(url: str, max_tokens: int) -> Any:
    """One non-streaming chat: how many tokens an answer really has at this max_tokens."""
    import httpx

    body = {"model": MODEL_ID, "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": "hello there"}]}  # fmt: skip
    answer = httpx.post(url, json=body, timeout=60,
                        headers={"Authorization": f"Bearer {API_KEY}"})  # fmt: skip
    answer.raise_for_status()
    return answer.json()["usage"]["completion_tokens"]


def run_config(
    urls: dict[str, str], pid: int, max_tokens: int, args: argparse.Namespace
) -> dict[str, Any]:
    """Calibrate on vLLM direct, then the interleaved rounds; bench/proxy.py's summary."""
    tokens = {name: completion_tokens(url, max_tokens) for name, url in urls.items()}
    print(f"\nmax_tokens {max_tokens}: completion tokens per answer {tokens}", flush=True)
    calibration = Target("direct", urls["direct"])
    run_async(measure([calibration], MODEL_ID, CONCURRENCY, CALIBRATION, 1, args.client,
                      max_tokens=max_tokens))  # fmt: skip
    counts = {
        c: int(min(MAX_COUNT, max(MIN_COUNT[c], median(calibration.rps[c]) * args.seconds)))
        for c in CONCURRENCY
    }
    print(f"requests per run (about {args.seconds} s each): {counts}", flush=True)
    targets = [
        Target("direct", urls["direct"]),
        Target("talktuah", urls["talktuah"], pid=pid),  # the server alone, not vLLM
    ]
    started = time.monotonic()
    run_async(measure(targets, MODEL_ID, CONCURRENCY, counts, args.rounds, args.client,
                      max_tokens=max_tokens))  # fmt: skip
    summary = summarize(targets, "direct")
    return {
        "max_tokens": max_tokens,
        "completion_tokens": tokens,
        "counts": counts,
        "rounds": args.rounds,
        "seconds": round(time.monotonic() - started, 1),
        "summary": summary,
        "verdicts": verdicts(summary, "talktuah"),
    }


def markdown(result: dict[str, Any]) -> str:
    """One markdown table per max_tokens: direct vs TalkTuah at each concurrency."""
    direct = result["summary"]["direct"]["by_concurrency"]
    tt = result["summary"]["talktuah"]["by_concurrency"]
    lines = [
        "| concurrency | TTFB p50 direct / TalkTuah (ms) | added p50 (ms) "
        "| TTFB p99 direct / TalkTuah (ms) | added p99 (ms) | req/s direct / TalkTuah "
        "| × direct | proxy CPU µs/req |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in sorted(tt, key=int):
        d, t = direct[c], tt[c]
        cpu = t.get("cpu_us_per_request")
        lines.append(
            f"| {c} | {d['ttfb_p50_ms']:.2f} / {t['ttfb_p50_ms']:.2f} | {t['added_p50_ms']:+.2f} "
            f"| {d['ttfb_p99_ms']:.2f} / {t['ttfb_p99_ms']:.2f} | {t['added_p99_ms']:+.2f} "
            f"| {d['rps']:.0f} / {t['rps']:.0f} | {t['rps_ratio']:.3f} "
            f"| {'-' if cpu is None else f'{cpu:.0f}'} |"
        )
    return "\n".join(lines)


def stop(server: TalkTuahProcess, pids: list[int]) -> dict[str, Any]:
    """SIGTERM TalkTuah; every vLLM process it started must go (killed if not)."""
    started = time.monotonic()
    server.stop(timeout=60)
    while alive(pids) and time.monotonic() - started < 60:
        time.sleep(0.2)
    left = alive(pids)
    for pid in left:  # never leave a GPU process behind
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    return {"engine_gone_s": round(time.monotonic() - started, 2), "killed": left}


def default_out() -> Path:
    if os.environ.get("OUT"):
        return Path(os.environ["OUT"]) / "proxy_bench.json"
    return REPO / "bench" / "results" / "proxy_gpu.json"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--max-tokens", type=int, action="append",
                   help="max_tokens per answer; repeat it (default: 16 and 128)")  # fmt: skip
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--seconds", type=float, default=3.0,
                   help="about how long one (round, concurrency, target) run lasts")  # fmt: skip
    p.add_argument("--client", choices=["raw", "httpx"], default="raw",
                   help="bench/proxy.py's load generator")  # fmt: skip
    p.add_argument("--out", type=Path, default=None, help="the JSON (see above)")
    p.add_argument("--logs-dir", type=Path, help="copy engine.log and TalkTuah's log here")
    p.add_argument("--work", type=Path, help="working directory (default: a new temp dir)")
    p.add_argument("--model-dir", type=Path, help="an already built head_dim-64 model")
    p.add_argument("--builder-python", default=sys.executable)
    p.add_argument("--builder-pythonpath", default="",
                   help="PYTHONPATH for building the model ('' = unset)")  # fmt: skip
    p.add_argument("--vllm-python", default=sys.executable)
    p.add_argument("--vllm-site", type=Path, help="vLLM's site dir (its whole PYTHONPATH)")
    p.add_argument("--vllm-env", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
    p.add_argument("--engine-executable", help="TALKTUAH_ENGINE_EXECUTABLE as is (no wrapper)")
    p.add_argument("--engine-arg", action="append", default=[], help="one more vLLM argument")
    p.add_argument("--gpu-memory-utilization", type=float, default=0.25)
    p.add_argument("--max-model-len", type=int, default=512)
    p.add_argument("--engine-timeout", type=float, default=300)
    p.add_argument("--deadline", type=float, default=540,
                   help="seconds in all; later max_tokens runs are skipped past it")  # fmt: skip
    args = p.parse_args()
    max_tokens_list = args.max_tokens or [16, 128]
    out = args.out or default_out()
    deadline = time.monotonic() + args.deadline
    work = args.work or Path(tempfile.mkdtemp(prefix="tt-proxy-gpu-"))
    work.mkdir(parents=True, exist_ok=True)
    home = work / "home"

    if args.engine_executable is None and (
        args.vllm_site is not None or args.vllm_env or args.vllm_python != sys.executable
    ):
        args.engine_executable = write_wrapper(work, args.vllm_python, args.vllm_site,
                                               args.vllm_env)  # fmt: skip
    gpu = nvidia_smi()
    results: dict[str, Any] = {
        "benchmark": "proxy_gpu",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "gpu": gpu,
        "vllm_side": versions(args.vllm_python, args.vllm_site),
        "talktuah_side": talktuah_side(),
        "settings": {
            "model": MODEL_ID,
            "engine_args": args.engine_arg or "(none: torch.compile + CUDA graphs)",
            "gpu_memory_utilization": args.gpu_memory_utilization,
            "max_model_len": args.max_model_len, "vllm_env": args.vllm_env,
            "client": args.client, "concurrency": list(CONCURRENCY),
            "targets": {"added_p50_ms": TARGET_P50_MS, "added_p99_ms": TARGET_P99_MS,
                        "rps_ratio": TARGET_RPS},
        },
        "runs": [],
    }  # fmt: skip
    print(json.dumps({k: results[k] for k in ("machine", "gpu", "vllm_side", "talktuah_side")}),
          flush=True)  # fmt: skip

    def save() -> None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2, default=str) + "\n")

    install_in_cache(home / "models" / "hub", MODEL_ID, model_files(args, work))
    print("starting talktuah serve with TALKTUAH_ENGINE=vllm ...", flush=True)
    started = time.monotonic()
    server = start(args, work, home)
    results["start_to_ready_s"] = round(time.monotonic() - started, 1)
    assert server.proc is not None
    pid = server.proc.pid
    record = json.loads((home / "engine" / "engine.pid").read_text())
    engine_pids = engine_tree(int(record["pid"]))
    results["engine_argv"] = " ".join(record["argv"])
    results["gpu_serving"] = nvidia_smi()
    save()
    urls = {
        "direct": f"http://127.0.0.1:{engine_port(home)}/v1/chat/completions",
        "talktuah": f"{server.url}/v1/chat/completions",
    }
    try:
        for index, max_tokens in enumerate(max_tokens_list):
            left = deadline - time.monotonic()
            if index and results["runs"] and left < 1.5 * results["runs"][-1]["seconds"]:
                print(f"\nskipping max_tokens {max_tokens}: {left:.0f} s left", flush=True)
                results.setdefault("skipped", []).append(max_tokens)
                continue
            try:
                results["runs"].append(run_config(urls, pid, max_tokens, args))
            except Exception as exc:  # keep what the other runs measured
                print(f"\nmax_tokens {max_tokens} FAILED: {exc!r}", flush=True)
                results.setdefault("failed", []).append({"max_tokens": max_tokens,
                                                         "error": repr(exc)})  # fmt: skip
            save()
    finally:
        results["stop"] = stop(server, engine_pids)
        save()
        if args.logs_dir is not None:
            args.logs_dir.mkdir(parents=True, exist_ok=True)
            for path in (home / "engine" / "engine.log", work / "talktuah.log"):
                if path.exists():
                    (args.logs_dir / path.name).write_bytes(path.read_bytes())

    for run in results["runs"]:
        title = (f"real vLLM on {gpu['name'] if gpu else 'GPU'}, max_tokens {run['max_tokens']} "
                 f"({run['rounds']} rounds, requests per run {run['counts']})")  # fmt: skip
        print_summary(title, run["summary"], "direct")
    print()
    for run in results["runs"]:
        print_verdicts(f"talktuah, max_tokens {run['max_tokens']}", run["verdicts"])
    for run in results["runs"]:
        print(f"\nmax_tokens {run['max_tokens']} (markdown)\n\n{markdown(run)}")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
