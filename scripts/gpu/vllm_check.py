#!/usr/bin/env python3
"""End-to-end check of `TALKTUAH_ENGINE=vllm` against a real vLLM on a real GPU.

What it does, each step printed as PASS/FAIL/SKIP (exit status 1 if any step failed):

1. builds a tiny random-weight Llama chat model (2 layers, hidden 256, 4 heads: head_dim 64,
   which every vLLM attention backend accepts) and serves it from the loopback test Hub
   (`tests/support/hub.py`);
2. starts the real `talktuah serve` with `TALKTUAH_ENGINE=vllm`, an API key and its own home;
3. pulls the model through `POST /api/download-model?auto=true` (the real download path);
4. `POST /api/switch-model` and times switch-to-ready (vLLM loading it, health checks passing);
5. a non-streaming and a streaming chat completion through TalkTuah's `/v1` with the `openai`
   SDK, a raw stream that must end with `data: [DONE]`, `/v1/models`;
6. `/api/model-loading-status`, `/api/healthz`, vLLM's own `/health` and `/v1/models`, vLLM's
   metrics in TalkTuah's `/metrics`, the engine's GPU memory in `nvidia-smi`;
7. stops TalkTuah (SIGTERM) and checks that every vLLM process and its GPU memory are gone;
8. with `--also-compiled`: starts TalkTuah again without `--enforce-eager` (vLLM's default
   torch.compile + CUDA graphs), times start-to-ready, one chat, stop, checks it is gone.

On a GPU box where TalkTuah and vLLM share one environment (`pip install -e . vllm openai`):

    python scripts/gpu/vllm_check.py

When vLLM lives in another environment or site dir, `--vllm-python` / `--vllm-site` make the
script write a small wrapper executable that runs `python -m vllm.entrypoints.cli.main` with
`PYTHONPATH` *set* to that site (so TalkTuah's own packages never leak into vLLM), and hand
it to TalkTuah as `TALKTUAH_ENGINE_EXECUTABLE`. See scripts/gpu/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))  # tests.support.* (the test Hub, the server wrapper)

MODEL_ID = "talktuah-gpu/tiny-llama-hd64"
API_KEY = "tt-gpu-check-key-0123456789abcdefghij"


# -- the model --------------------------------------------------------------------------------


def build_model(out_dir: Path, seed: int = 7) -> dict[str, Any]:
    """The tests' tiny chat model (same tokenizer recipe and template), widened to head_dim 64.

    tests/support/tiny_model.py's default is hidden 64 / 4 heads (head_dim 16); vLLM's
    FlashAttention backends want a head size that is a multiple of 8 and FA3 kernels exist
    for 64 and up, so this variant uses hidden 256 / 4 heads. Saved in bfloat16.
    """
    from tests.support.tiny_model import build_tiny_chat_model

    info: dict[str, Any] = build_tiny_chat_model(
        out_dir, seed, hidden_size=256, max_positions=1024, bfloat16=True
    )
    info["files"] = sorted(p.name for p in out_dir.iterdir())
    return info


# -- small helpers ----------------------------------------------------------------------------


def nvidia_smi() -> dict[str, Any] | None:
    """GPU name, driver, memory used/total (MiB) and the compute processes, or None."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        gpu = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.used,memory.total",
             "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=30, check=True,
        ).stdout.strip().splitlines()[0]  # fmt: skip
        apps = subprocess.run(
            ["nvidia-smi", "--query-compute-apps=pid,used_memory",
             "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=30, check=True,
        ).stdout.strip().splitlines()  # fmt: skip
    except (OSError, subprocess.SubprocessError, IndexError):
        return None
    name, driver, used, total = (part.strip() for part in gpu.split(","))
    processes = []
    for line in apps:
        if line.strip() and "," in line:
            pid, mem = (part.strip() for part in line.split(",", 1))
            processes.append({"pid": int(pid), "used_mib": mem})
    return {
        "name": name,
        "driver": driver,
        "used_mib": int(used),
        "total_mib": int(total),
        "processes": processes,
    }


def proc_table() -> dict[int, tuple[int, int, str]]:
    """pid -> (ppid, pgrp, state) for every live process."""
    table: dict[int, tuple[int, int, str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        table[int(entry.name)] = (int(fields[1]), int(fields[2]), fields[0])
    return table


def engine_tree(root: int) -> list[int]:
    """`root`, its descendants and its process group (vLLM's API server and EngineCore)."""
    table = proc_table()
    found = {root} if root in table else set()
    found |= {pid for pid, (_, pgrp, _) in table.items() if pgrp == root}
    changed = True
    while changed:
        changed = False
        for pid, (ppid, _, _) in table.items():
            if ppid in found and pid not in found:
                found.add(pid)
                changed = True
    return sorted(found)


def alive(pids: list[int]) -> list[int]:
    table = proc_table()
    return [pid for pid in pids if pid in table and table[pid][2] != "Z"]


def cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "?"
    return " ".join(part.decode(errors="replace") for part in raw.split(b"\0") if part)


class Failed(Exception):
    """A step's check did not hold."""


def check(condition: object, message: str) -> None:
    if not condition:
        raise Failed(message)


class Report:
    """Runs steps, prints PASS/FAIL/SKIP lines, keeps the numbers for the summary."""

    def __init__(self) -> None:
        self.steps: list[dict[str, Any]] = []
        self.numbers: dict[str, Any] = {}

    def step(self, name: str, fn: Callable[[], Any], *, needs: list[str] | None = None) -> Any:
        missing = [n for n in needs or [] if not self.passed(n)]
        if missing:
            print(f"SKIP  {name} (needs: {', '.join(missing)})", flush=True)
            self.steps.append({"step": name, "result": "SKIP", "needs": missing})
            return None
        print(f"....  {name}", flush=True)
        started = time.monotonic()
        try:
            value = fn()
        except Exception as exc:  # a failed step is reported, the others still run
            took = time.monotonic() - started
            detail = str(exc) if isinstance(exc, Failed) else traceback.format_exc()
            print(f"FAIL  {name} ({took:.1f} s): {detail}", flush=True)
            self.steps.append({"step": name, "result": "FAIL", "seconds": round(took, 2),
                               "error": detail[-4000:]})  # fmt: skip
            return None
        took = time.monotonic() - started
        shown = "" if value is None else f": {value}"
        print(f"PASS  {name} ({took:.1f} s){shown}", flush=True)
        self.steps.append({"step": name, "result": "PASS", "seconds": round(took, 2),
                           "detail": value if isinstance(value, (str, int, float, dict, list))
                           else repr(value)})  # fmt: skip
        return value

    def passed(self, name: str) -> bool:
        return any(s["step"] == name and s["result"] == "PASS" for s in self.steps)

    @property
    def failed(self) -> bool:
        return any(s["result"] == "FAIL" for s in self.steps)


# -- the check --------------------------------------------------------------------------------


class Check:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.report = Report()
        self.work = Path(args.work or tempfile.mkdtemp(prefix="tt-vllm-check-"))
        self.home = self.work / "home"
        self.deadline = time.monotonic() + args.deadline
        self.engine_executable = args.engine_executable
        self.hub: Any = None
        self.server: Any = None
        self.gpu_baseline: dict[str, Any] | None = None
        self.engine_pids: list[int] = []

    # -- setup ------------------------------------------------------------------------------

    def vllm_python_env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.args.vllm_site is not None:
            env["PYTHONPATH"] = str(self.args.vllm_site)
        return env

    def write_wrapper(self) -> str:
        """An executable that runs vLLM's CLI from its own interpreter / site dir."""
        wrapper = self.work / "bin" / "vllm"
        wrapper.parent.mkdir(parents=True, exist_ok=True)
        lines = ["#!/bin/sh", "# vllm_check.py: vLLM from its own environment."]
        if self.args.vllm_site is not None:
            # set, not appended: TalkTuah's PYTHONPATH must not reach vLLM
            lines.append(f"export PYTHONPATH={shlex.quote(str(self.args.vllm_site))}")
        for name, value in self.args.vllm_env:
            lines.append(f"export {name}={shlex.quote(value)}")
        lines.append(f'exec {shlex.quote(self.args.vllm_python)} -m vllm.entrypoints.cli.main "$@"')
        wrapper.write_text("\n".join(lines) + "\n")
        wrapper.chmod(0o755)
        return str(wrapper)

    def environment(self) -> dict[str, Any]:
        self.work.mkdir(parents=True, exist_ok=True)
        if self.engine_executable is None and (
            self.args.vllm_site is not None
            or self.args.vllm_env
            or self.args.vllm_python != sys.executable
        ):
            self.engine_executable = self.write_wrapper()
        probe = (
            "import importlib.metadata as m, json, torch; print(json.dumps({"
            "'vllm': m.version('vllm'), 'torch': torch.__version__,"
            "'cuda': torch.version.cuda, 'transformers': m.version('transformers'),"
            "'huggingface_hub': m.version('huggingface_hub')}))"
        )
        out = subprocess.run(
            [self.args.vllm_python, "-c", probe], env=self.vllm_python_env(),
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        check(out.returncode == 0, f"vLLM's Python cannot import vllm/torch:\n{out.stderr[-2000:]}")
        versions = json.loads(out.stdout.strip().splitlines()[-1])
        self.gpu_baseline = nvidia_smi()
        check(self.gpu_baseline is not None, "nvidia-smi is missing or failed")
        assert self.gpu_baseline is not None
        import huggingface_hub

        info = {
            "python": sys.version.split()[0],
            "vllm_side": versions,
            "talktuah_side_huggingface_hub": huggingface_hub.__version__,
            "gpu": self.gpu_baseline["name"],
            "driver": self.gpu_baseline["driver"],
            "gpu_used_mib_before": self.gpu_baseline["used_mib"],
            "gpu_total_mib": self.gpu_baseline["total_mib"],
            "engine_executable": self.engine_executable or "vllm (beside Python / on PATH)",
            "extra_args": self.extra_args(eager=not self.args.no_eager),
        }
        self.report.numbers["environment"] = info
        return info

    def model(self) -> dict[str, Any]:
        model_dir = self.args.model_dir or self.work / "model"
        if not (Path(model_dir) / "config.json").exists():
            env = dict(os.environ)
            if self.args.builder_pythonpath is not None:
                if self.args.builder_pythonpath:
                    env["PYTHONPATH"] = self.args.builder_pythonpath
                else:
                    env.pop("PYTHONPATH", None)
            out = subprocess.run(
                [self.args.builder_python, str(Path(__file__).resolve()), "--build-model",
                 str(model_dir)],
                env=env, capture_output=True, text=True, timeout=300, cwd=REPO,
            )  # fmt: skip
            check(out.returncode == 0, f"building the model failed:\n{out.stderr[-3000:]}")
        files = {p.name: p.read_bytes() for p in sorted(Path(model_dir).iterdir()) if p.is_file()}
        config = json.loads(files["config.json"])
        check(config["hidden_size"] // config["num_attention_heads"] == 64, "head_dim is not 64")
        from tests.support.hub import Hub

        self.hub = Hub(self.work / "hub-store")
        self.hub.start()
        sha = self.hub.add_repo(MODEL_ID, files)
        return {"files": sorted(files), "bytes": sum(map(len, files.values())), "commit": sha[:12],
                "hub": self.hub.url}  # fmt: skip

    def extra_args(self, *, eager: bool) -> list[str]:
        extra = ["--enforce-eager"] if eager else []
        return [*extra, *self.args.engine_arg]

    def start_server(self, *, eager: bool, label: str) -> dict[str, Any]:
        from tests.support.server import TalkTuahProcess

        env = {
            "HF_ENDPOINT": self.hub.url,
            "HF_HOME": str(self.work / "talktuah-hf-home"),
            "HF_HUB_DISABLE_PROGRESS_BARS": "1",
            "PYTHONPATH": os.pathsep.join(
                p for p in [str(REPO / "src"), os.environ.get("PYTHONPATH", "")] if p
            ),
            "TALKTUAH_ENGINE": "vllm",
            "TALKTUAH_VLLM_GPU_MEMORY_UTILIZATION": str(self.args.gpu_memory_utilization),
            "TALKTUAH_VLLM_MAX_MODEL_LEN": str(self.args.max_model_len),
            "TALKTUAH_ENGINE_EXTRA_ARGS": json.dumps(self.extra_args(eager=eager)),
            "TALKTUAH_ENGINE_START_TIMEOUT": str(self.args.engine_timeout),
            "TALKTUAH_ENGINE_HEALTH_INTERVAL": "0.5",
            "TALKTUAH_ENGINE_STOP_TIMEOUT": "30",
            "TALKTUAH_PROXY_LOAD_WAIT": "30",
        }
        if self.engine_executable is not None:
            env["TALKTUAH_ENGINE_EXECUTABLE"] = self.engine_executable
        self.server = TalkTuahProcess(self.home, api_key=API_KEY, env=env)
        self.server.log_path = self.work / f"talktuah-{label}.log"
        started = time.monotonic()
        self.server.start(timeout=60)
        took = time.monotonic() - started
        status = self.status()
        check(status["engine"] == "vllm", f"engine is {status['engine']!r}, not vllm")
        return {
            "api_up_s": round(took, 2),
            "engine_status": status["status"],
            "url": self.server.url,
        }

    # -- API helpers ------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        with self.server.client() as client:
            body: dict[str, Any] = client.get("/api/model-loading-status").json()
        return body

    def wait_ready(self, started: float) -> dict[str, Any]:
        phases: list[str] = []
        limit = min(self.args.engine_timeout + 30, self.deadline - time.monotonic())
        while True:
            status = self.status()
            phase = f"{status['status']}/{(status.get('loading') or {}).get('phase')}"
            if not phases or phases[-1] != phase:
                phases.append(phase)
                print(f"      +{time.monotonic() - started:6.1f} s  {phase}", flush=True)
            if status["status"] == "ready" and status["serving_model"] == MODEL_ID:
                return {"seconds": round(time.monotonic() - started, 2), "phases": phases}
            if status["status"] == "failed":
                tail = "\n".join(status.get("log_tail") or [])
                raise Failed(f"engine failed: {status.get('error')}\n--- log tail ---\n{tail}")
            if time.monotonic() - started > limit:
                raise Failed(f"not ready after {limit:.0f} s: {status}\n{self.engine_log(60)}")
            time.sleep(0.25)

    def engine_log(self, lines: int = 80) -> str:
        path = self.home / "engine" / "engine.log"
        try:
            return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no engine log)"

    def openai_client(self) -> Any:
        import openai

        return openai.OpenAI(base_url=f"{self.server.url}/v1", api_key=API_KEY, max_retries=0,
                             timeout=120)  # fmt: skip

    # -- steps ------------------------------------------------------------------------------

    def pull(self) -> dict[str, Any]:
        started = time.monotonic()
        with self.server.client() as client:
            answer = client.post("/api/download-model",
                                 params={"model_id": MODEL_ID, "auto": "true"})  # fmt: skip
            check(answer.status_code == 202, f"download-model: {answer.status_code} {answer.text}")
            job_id = answer.json()["id"] if "id" in answer.json() else answer.json()["job_id"]
            while True:
                job = client.get("/api/download-progress", params={"job_id": job_id}).json()
                if job["status"] == "complete":
                    break
                check(job["status"] in ("queued", "downloading"), f"download ended: {job}")
                check(time.monotonic() - started < 120, f"download not done in 120 s: {job}")
                time.sleep(0.1)
            local = client.get("/api/models/local").json()
        took = time.monotonic() - started
        text = json.dumps(local)
        check(MODEL_ID in text, f"/api/models/local does not list it: {text[:500]}")
        fetched = self.hub.fetched_files(MODEL_ID)
        return {"seconds": round(took, 2), "bytes": job.get("bytes_done"),
                "files_from_hub": len(fetched)}  # fmt: skip

    def switch(self) -> dict[str, Any]:
        started = time.monotonic()
        with self.server.client() as client:
            answer = client.post("/api/switch-model", params={"model_id": MODEL_ID})
        check(answer.status_code == 202, f"switch-model: {answer.status_code} {answer.text}")
        ready = self.wait_ready(started)
        self.report.numbers["switch_to_ready_s"] = ready["seconds"]
        self.engine_pids = self.current_engine_pids()
        return ready

    def current_engine_pids(self) -> list[int]:
        record = json.loads((self.home / "engine" / "engine.pid").read_text())
        return engine_tree(int(record["pid"]))

    def models(self) -> list[str]:
        ids = [m.id for m in self.openai_client().models.list().data]
        check(ids == [MODEL_ID], f"/v1/models lists {ids}")
        return ids

    def chat(self) -> dict[str, Any]:
        started = time.monotonic()
        reply = self.openai_client().chat.completions.create(
            model=MODEL_ID, messages=[{"role": "user", "content": "hello there"}],
            max_tokens=16, temperature=0,
        )  # fmt: skip
        took = time.monotonic() - started
        check(reply.model == MODEL_ID, f"model is {reply.model!r}")
        usage = reply.usage
        check(usage is not None and usage.completion_tokens > 0, f"no tokens generated: {usage}")
        assert usage is not None
        content = reply.choices[0].message.content
        return {"seconds": round(took, 3), "completion_tokens": usage.completion_tokens,
                "finish_reason": reply.choices[0].finish_reason, "content": content}  # fmt: skip

    def stream(self) -> dict[str, Any]:
        started = time.monotonic()
        arrivals: list[float] = []
        text = ""
        chunks = self.openai_client().chat.completions.create(
            model=MODEL_ID, messages=[{"role": "user", "content": "tell me a story"}],
            max_tokens=24, temperature=0, stream=True,
        )  # fmt: skip
        for chunk in chunks:
            arrivals.append(time.monotonic())
            check(chunk.model == MODEL_ID, f"chunk model is {chunk.model!r}")
            if chunk.choices and chunk.choices[0].delta.content:
                text += chunk.choices[0].delta.content
        check(len(arrivals) >= 5, f"only {len(arrivals)} chunks")
        body = {"model": MODEL_ID, "messages": [{"role": "user", "content": "hi"}],
                "max_tokens": 8, "stream": True}  # fmt: skip
        with self.server.client() as client:
            with client.stream("POST", "/v1/chat/completions", json=body) as response:
                check(response.status_code == 200, f"raw stream: {response.status_code}")
                lines = [line for line in response.iter_lines() if line.startswith("data:")]
        check(lines and lines[-1] == "data: [DONE]", f"raw stream ends with {lines[-1:]}")
        return {"chunks": len(arrivals), "ttfb_s": round(arrivals[0] - started, 3),
                "total_s": round(arrivals[-1] - started, 3), "text": text,
                "raw_stream_events": len(lines)}  # fmt: skip

    def health(self) -> dict[str, Any]:
        import httpx

        status = self.status()
        check(status["status"] == "ready" and status["engine"] == "vllm", f"status: {status}")
        with self.server.client() as client:
            healthz = client.get("/api/healthz")
            metrics = client.get("/metrics").text
        record = json.loads((self.home / "engine" / "engine.pid").read_text())
        argv: list[str] = record["argv"]
        port = argv[argv.index("--port") + 1]
        direct = httpx.get(f"http://127.0.0.1:{port}/health", timeout=10)
        served = httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=10).json()
        check(direct.status_code == 200, f"vLLM /health answered {direct.status_code}")
        check([m["id"] for m in served["data"]] == [MODEL_ID], f"vLLM /v1/models: {served}")
        vllm_metrics = [line for line in metrics.splitlines() if line.startswith("vllm:")]
        check(vllm_metrics, "no vllm: metrics in TalkTuah's /metrics")
        gpu = nvidia_smi()
        assert gpu is not None and self.gpu_baseline is not None
        gpu_pids = {p["pid"] for p in gpu["processes"]}
        return {
            "healthz": healthz.status_code,
            "healthz_body": healthz.json(),
            "vllm_health": direct.status_code,
            "vllm_metric_lines": len(vllm_metrics),
            "engine_argv": " ".join(argv),
            "engine_processes": {pid: cmdline(pid)[:120] for pid in self.engine_pids},
            "gpu_used_mib": gpu["used_mib"],
            "gpu_used_by_engine_mib": gpu["used_mib"] - self.gpu_baseline["used_mib"],
            "gpu_processes": gpu["processes"],
            "gpu_processes_in_engine_tree": sorted(gpu_pids & set(self.engine_pids)),
        }

    def stop(self) -> dict[str, Any]:
        pids = self.engine_pids or []
        check(alive(pids), f"no engine process alive before stopping: {pids}")
        started = time.monotonic()
        assert self.server.proc is not None
        self.server.proc.send_signal(signal.SIGTERM)
        code = self.server.proc.wait(90)
        exited = time.monotonic() - started
        while alive(pids) and time.monotonic() - started < 60:
            time.sleep(0.2)
        left = alive(pids)
        check(not left, f"engine processes still alive after stop: "
                        f"{[(pid, cmdline(pid)) for pid in left]}")  # fmt: skip
        gone_s = time.monotonic() - started
        gpu = nvidia_smi()
        while (
            gpu is not None
            and (gpu["processes"] or self._gpu_delta(gpu) > 512)
            and (time.monotonic() - started < 60)
        ):
            time.sleep(0.5)
            gpu = nvidia_smi()
        assert gpu is not None
        check(not gpu["processes"], f"GPU processes left: {gpu['processes']}")
        check(self._gpu_delta(gpu) <= 512, f"GPU memory not released: {gpu['used_mib']} MiB used")
        pidfile_gone = not (self.home / "engine" / "engine.pid").exists()
        return {"talktuah_exit_code": code, "talktuah_exit_s": round(exited, 2),
                "engine_gone_s": round(gone_s, 2), "gpu_used_mib_after": gpu["used_mib"],
                "engine_pidfile_removed": pidfile_gone}  # fmt: skip

    def _gpu_delta(self, gpu: dict[str, Any]) -> int:
        assert self.gpu_baseline is not None
        return int(gpu["used_mib"]) - int(self.gpu_baseline["used_mib"])

    def restart_compiled(self) -> dict[str, Any]:
        left = self.deadline - time.monotonic()
        check(left > 150, f"only {left:.0f} s left of --deadline: not trying the compiled mode")
        started = time.monotonic()
        self.start_server(eager=False, label="compiled")
        ready = self.wait_ready(started)
        self.report.numbers["compiled_start_to_ready_s"] = ready["seconds"]
        self.engine_pids = self.current_engine_pids()
        chat = self.chat()
        return {"start_to_ready_s": ready["seconds"], "phases": ready["phases"], "chat": chat}

    # -- the run ----------------------------------------------------------------------------

    def run(self) -> int:
        r = self.report
        print(f"work dir: {self.work}", flush=True)
        try:
            r.step("environment", self.environment)
            r.step("model on the test hub", self.model)
            r.step("talktuah serve (engine vllm)", lambda: self.start_server(
                eager=not self.args.no_eager, label="eager" if not self.args.no_eager else "main"),
                needs=["environment", "model on the test hub"])  # fmt: skip
            up = ["talktuah serve (engine vllm)"]
            r.step("pull through /api/download-model", self.pull, needs=up)
            r.step("switch-model to ready", self.switch,
                   needs=["pull through /api/download-model"])  # fmt: skip
            ready = ["switch-model to ready"]
            r.step("/v1/models", self.models, needs=ready)
            r.step("chat completion (non-streaming)", self.chat, needs=ready)
            r.step("chat completion (streaming)", self.stream, needs=ready)
            r.step("engine status, health, metrics, GPU", self.health, needs=ready)
            r.step("stop talktuah: vLLM and its GPU memory gone", self.stop, needs=ready)
            if self.args.also_compiled:
                r.step("compiled mode (no --enforce-eager): start to ready + chat",
                       self.restart_compiled,
                       needs=["stop talktuah: vLLM and its GPU memory gone"])  # fmt: skip
                r.step(
                    "compiled mode: stop, vLLM and its GPU memory gone",
                    self.stop,
                    needs=["compiled mode (no --enforce-eager): start to ready + chat"],
                )
        finally:
            self.cleanup()
        summary = {"failed": r.failed, "numbers": r.numbers, "steps": r.steps}
        if self.args.logs_dir is not None:
            self.collect_logs(Path(self.args.logs_dir), summary)
        print("SUMMARY " + json.dumps({s["step"]: s["result"] for s in r.steps}), flush=True)
        print("RESULT " + ("FAIL" if r.failed else "PASS"), flush=True)
        return 1 if r.failed else 0

    def cleanup(self) -> None:
        if self.server is not None and self.server.proc is not None:
            if self.server.proc.poll() is None:
                self.server.stop(timeout=60)
        for pid in alive(self.engine_pids):  # never leave a GPU process behind
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass
        if self.hub is not None:
            self.hub.stop()

    def collect_logs(self, logs: Path, summary: dict[str, Any]) -> None:
        logs.mkdir(parents=True, exist_ok=True)
        (logs / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
        for path in [self.home / "engine" / "engine.log", *self.work.glob("talktuah-*.log")]:
            if path.exists():
                shutil.copy(path, logs / path.name)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--build-model", type=Path, metavar="DIR",
                        help="only build the tiny model into DIR and exit")  # fmt: skip
    parser.add_argument("--work", help="working directory (default: a new temp dir)")
    parser.add_argument("--model-dir", type=Path, help="an already built model (skip building)")
    parser.add_argument(
        "--builder-python",
        default=sys.executable,
        help="Python (torch, transformers, tokenizers) that builds the model",
    )
    parser.add_argument(
        "--builder-pythonpath",
        default=None,
        help="PYTHONPATH for the model builder ('' = unset; default: inherit)",
    )
    parser.add_argument(
        "--vllm-python", default=sys.executable, help="the Python that has vLLM (default: this one)"
    )
    parser.add_argument(
        "--vllm-site", type=Path, help="a site dir holding vLLM: set as vLLM's whole PYTHONPATH"
    )
    parser.add_argument(
        "--vllm-env",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "VALUE"),
        help="environment for vLLM (wrapper)",
    )
    parser.add_argument(
        "--engine-executable", help="TALKTUAH_ENGINE_EXECUTABLE as is (no wrapper is written)"
    )
    parser.add_argument(
        "--engine-arg", action="append", default=[], help="one more vLLM argument (repeat)"
    )
    parser.add_argument(
        "--no-eager",
        action="store_true",
        help="first run without --enforce-eager (vLLM's default compile mode)",
    )
    parser.add_argument(
        "--also-compiled",
        action="store_true",
        help="after the eager run, restart without --enforce-eager and time it",
    )
    parser.add_argument("--gpu-memory-utilization", type=float, default=0.25)
    parser.add_argument("--max-model-len", type=int, default=512)
    parser.add_argument("--engine-timeout", type=float, default=300)
    parser.add_argument(
        "--deadline",
        type=float,
        default=900,
        help="seconds for the whole check; optional steps are skipped past it",
    )
    parser.add_argument("--logs-dir", help="copy summary.json and the logs here")
    args = parser.parse_args()
    if args.build_model is not None:
        print(json.dumps(build_model(args.build_model)))
        return 0
    return Check(args).run()


if __name__ == "__main__":
    sys.exit(main())
