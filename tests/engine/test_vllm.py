"""The vLLM driver: the exact `vllm serve` command and environment, and its process life.

vLLM cannot be installed on these CPU-only machines (it pins a CUDA torch), so the lifecycle
tests run a stand-in executable named `vllm`: a small Python script that records the argv
and environment it was given, starts a child process (as vLLM starts engine-core and worker
processes), and answers `GET /health` and `GET /v1/models` on `--host`/`--port` the way
vLLM's OpenAI server does. Everything else — ManagedProcess, the process group, the log
file, the pidfile — is the real thing. On a GPU machine the driver is run with real vLLM.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from talktuah.config import Settings
from talktuah.engine.env import engine_env as vllm_env
from talktuah.engine.vllm import VllmDriver, vllm_command
from talktuah.errors import EngineError

from ..support.eventually import eventually

MODEL = "org/m"

FAKE_VLLM = textwrap.dedent(
    '''\
    #!{python}
    """Stand-in for `vllm serve` (vLLM cannot be installed on CPU-only machines)."""
    import json, os, subprocess, sys, threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from pathlib import Path

    args = sys.argv[1:]
    assert args[0] == "serve", args
    host = args[args.index("--host") + 1]
    port = int(args[args.index("--port") + 1])
    served = args[args.index("--served-model-name") + 1]

    # Like vLLM's engine-core and workers: a child in the same process group.
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path == "/health":
                body = b""
            elif self.path == "/v1/models":
                body = json.dumps({{"object": "list", "data": [{{"id": served}}]}}).encode()
            else:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    record = {{
        "argv": sys.argv,
        "pid": os.getpid(),
        "child": child.pid,
        "env": {{k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "HF_HUB_CACHE", "HF_HOME",
                                              "HF_TOKEN", "VLLM_NO_USAGE_STATS")}},
    }}
    out = Path(__file__).with_name("vllm-record.json")
    out.with_suffix(".tmp").write_text(json.dumps(record))
    out.with_suffix(".tmp").replace(out)
    print(f"INFO fake vllm: serving {{served}} on {{host}}:{{port}}", flush=True)

    def give_up():  # never outlive a test run, whatever happens to the test
        child.kill()
        os._exit(3)

    threading.Timer(30, give_up).start()
    server.serve_forever()
    '''
)


def make_settings(home: Path, **overrides: Any) -> Settings:
    return Settings(home=home, **overrides)


def alive(pid: int) -> bool:
    """Running (a zombie nobody has reaped yet counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def healthy(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture
def fake_vllm(tmp_path: Path) -> Path:
    path = tmp_path / "bin" / "vllm"
    path.parent.mkdir()
    path.write_text(FAKE_VLLM.format(python=sys.executable))
    path.chmod(0o755)
    return path


@pytest.fixture
def reaper() -> Iterator[list[int]]:
    """Process groups a test started; killed at the end whatever the test's outcome."""
    groups: list[int] = []
    yield groups
    for pgid in groups:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass


# -- the command line -----------------------------------------------------------------------


def test_command_for_default_settings(tmp_path: Path) -> None:
    assert vllm_command(make_settings(tmp_path), MODEL, 8001) == [
        "vllm", "serve", "org/m",
        "--host", "127.0.0.1",
        "--port", "8001",
        "--served-model-name", "org/m",
        "--tensor-parallel-size", "1",
        "--pipeline-parallel-size", "1",
        "--gpu-memory-utilization", "0.9",
        "--dtype", "auto",
    ]  # fmt: skip


def test_command_with_every_option(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path,
        engine_host="0.0.0.0",
        vllm_tensor_parallel_size=2,
        vllm_pipeline_parallel_size=2,
        vllm_gpu_memory_utilization=0.85,
        vllm_max_model_len=8192,
        engine_dtype="bfloat16",
        vllm_distributed_executor_backend="ray",
        engine_extra_args=["--enable-prefix-caching", "--max-num-seqs", "8"],
    )
    assert vllm_command(settings, MODEL, 9000, executable="/opt/vllm/bin/vllm") == [
        "/opt/vllm/bin/vllm", "serve", "org/m",
        "--host", "0.0.0.0",
        "--port", "9000",
        "--served-model-name", "org/m",
        "--tensor-parallel-size", "2",
        "--pipeline-parallel-size", "2",
        "--gpu-memory-utilization", "0.85",
        "--dtype", "bfloat16",
        "--max-model-len", "8192",
        "--distributed-executor-backend", "ray",
        "--enable-prefix-caching", "--max-num-seqs", "8",
    ]  # fmt: skip


def test_options_come_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TALKTUAH_VLLM_TENSOR_PARALLEL_SIZE", "4")
    monkeypatch.setenv("TALKTUAH_VLLM_MAX_MODEL_LEN", "4096")
    monkeypatch.setenv("TALKTUAH_VLLM_DISTRIBUTED_EXECUTOR_BACKEND", "ray")
    monkeypatch.setenv("TALKTUAH_ENGINE_EXTRA_ARGS", '["--enforce-eager"]')
    argv = vllm_command(Settings(home=tmp_path), MODEL, 1)
    assert argv[argv.index("--tensor-parallel-size") + 1] == "4"
    assert argv[argv.index("--max-model-len") + 1] == "4096"
    assert argv[argv.index("--distributed-executor-backend") + 1] == "ray"
    assert argv[-1] == "--enforce-eager"


# -- the environment ------------------------------------------------------------------------


def test_env_is_offline_on_our_models_dir(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "home")
    base = {
        "PATH": "/usr/local/bin:/usr/bin",
        "CUDA_VISIBLE_DEVICES": "0,1",
        "VLLM_ATTENTION_BACKEND": "FLASHINFER",
        "HF_HOME": "/home/me/.cache/huggingface",
        "HF_HUB_CACHE": "/elsewhere",
        "HF_ENDPOINT": "https://mirror.example",
        "HF_TOKEN": "hf_from_the_shell",
        "PROXY_API_KEY": "tt-secret",
    }
    env = vllm_env(settings, base)
    assert env["HF_HUB_CACHE"] == str(settings.models_dir)
    assert env["HF_HOME"] == str(settings.engine_dir / "hf-home")
    assert env["HF_HUB_OFFLINE"] == "1"
    assert env["VLLM_NO_USAGE_STATS"] == "1" and env["DO_NOT_TRACK"] == "1"
    # what the user set for the engine stays; what would point it elsewhere goes
    assert env["PATH"] == base["PATH"]
    assert env["CUDA_VISIBLE_DEVICES"] == "0,1"
    assert env["VLLM_ATTENTION_BACKEND"] == "FLASHINFER"
    for name in ("HF_ENDPOINT", "HF_TOKEN", "PROXY_API_KEY"):
        assert name not in env
    assert base["HF_TOKEN"] == "hf_from_the_shell"  # the caller's mapping is not touched


def test_env_never_carries_a_token(tmp_path: Path) -> None:
    """Issue 15: the engine reads the local cache only, so TalkTuah's HF_TOKEN stays ours."""
    assert "HF_TOKEN" not in vllm_env(make_settings(tmp_path), {})
    with_token = make_settings(tmp_path, hf_token="hf_ours")
    env = vllm_env(with_token, {"HUGGING_FACE_HUB_TOKEN": "hf_old_name", "HF_TOKEN": "hf_x"})
    assert "HF_TOKEN" not in env and "HUGGING_FACE_HUB_TOKEN" not in env
    assert "hf_ours" not in env.values() and env["HF_HUB_OFFLINE"] == "1"


# -- the driver -----------------------------------------------------------------------------


def test_port_is_picked_once_and_urls_point_at_it(tmp_path: Path) -> None:
    driver = VllmDriver(make_settings(tmp_path))
    assert driver.port > 0
    assert driver.base_url == f"http://127.0.0.1:{driver.port}"
    assert driver.health_url == f"{driver.base_url}/health"
    assert driver.served_name(MODEL) == MODEL
    fixed = VllmDriver(make_settings(tmp_path, engine_host="0.0.0.0", engine_port=8123))
    assert fixed.base_url == "http://127.0.0.1:8123"


def test_missing_vllm_says_what_to_do(tmp_path: Path) -> None:
    driver = VllmDriver(make_settings(tmp_path), executable=str(tmp_path / "no" / "vllm"))
    with pytest.raises(EngineError, match="pip install vllm.*TALKTUAH_ENGINE=docker"):
        driver.start(MODEL)
    assert not driver.running()


def test_start_serves_and_stop_leaves_no_process(
    tmp_path: Path, fake_vllm: Path, reaper: list[int]
) -> None:
    settings = make_settings(tmp_path / "home", engine_stop_timeout=5)
    driver = VllmDriver(settings, executable=str(fake_vllm))
    driver.start(MODEL)
    pid = driver.process.pid
    assert pid is not None
    reaper.append(pid)

    eventually(lambda: healthy(driver.health_url), timeout=10, what=driver.log_tail)
    models = httpx.get(f"{driver.base_url}/v1/models").json()
    assert [m["id"] for m in models["data"]] == [driver.served_name(MODEL)]
    record = json.loads((fake_vllm.parent / "vllm-record.json").read_text())
    assert record["argv"] == vllm_command(settings, MODEL, driver.port, str(fake_vllm))
    assert record["pid"] == pid
    assert record["env"]["HF_HUB_OFFLINE"] == "1"
    assert record["env"]["HF_HUB_CACHE"] == str(settings.models_dir)
    assert record["env"]["HF_TOKEN"] is None
    assert driver.running()
    assert any("fake vllm: serving org/m" in line for line in driver.log_tail())

    driver.stop()
    assert not driver.running()
    assert not alive(pid)
    eventually(lambda: not alive(record["child"]), timeout=5, what="the engine's child exiting")
    assert not (settings.engine_dir / "engine.pid").exists()
    driver.stop()  # idempotent


def test_an_engine_left_by_a_killed_talktuah_is_cleaned_up(
    tmp_path: Path, fake_vllm: Path, reaper: list[int]
) -> None:
    """TalkTuah is SIGKILLed while its engine runs; the next start ends that engine.

    A separate Python process plays TalkTuah (it starts the driver, then is killed), so the
    engine really outlives its parent, as it would in production.
    """
    home = tmp_path / "home"
    talktuah = subprocess.Popen(
        [
            sys.executable, "-c",
            textwrap.dedent(
                f"""
                import sys, time
                from talktuah.config import Settings
                from talktuah.engine.vllm import VllmDriver
                driver = VllmDriver(Settings(home={str(home)!r}), executable={str(fake_vllm)!r})
                driver.start({MODEL!r})
                print(driver.process.pid, driver.port, flush=True)
                time.sleep(30)
                """
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert talktuah.stdout is not None
        pid, port = (int(part) for part in talktuah.stdout.readline().split())
        reaper.append(pid)
        eventually(lambda: healthy(f"http://127.0.0.1:{port}/health"), timeout=10)
    finally:
        talktuah.kill()  # SIGKILL: no chance to stop its engine
        talktuah.wait()
    record = json.loads((fake_vllm.parent / "vllm-record.json").read_text())
    assert alive(pid) and alive(record["child"])  # the orphaned engine still runs

    VllmDriver(make_settings(home), executable=str(fake_vllm)).cleanup_orphans()

    # cleanup_orphans returns once the group is gone (or SIGKILLed after the stop timeout)
    eventually(lambda: not alive(pid), timeout=1, what="the orphaned engine stopping")
    eventually(lambda: not alive(record["child"]), timeout=1, what="its child exiting")
    assert not (home / "engine" / "engine.pid").exists()
