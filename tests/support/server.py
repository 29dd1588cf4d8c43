"""Run the real `talktuah serve` process for end-to-end tests."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from .eventually import eventually


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def engine_record(home: Path, model_id: str) -> dict[str, Any]:
    """The pidfile record (pid, argv) of the engine instance serving `model_id`: each loaded
    model has its own (`engine.pid`, `engine-2.pid`, ...) in `$TALKTUAH_HOME/engine/`."""
    for pidfile in sorted((home / "engine").glob("engine*.pid")):
        try:
            record: dict[str, Any] = json.loads(pidfile.read_text())
        except (OSError, ValueError):
            continue  # written or removed right now
        argv = record["argv"]
        # `transformers serve <id>`, `vllm serve <id>`, llama-server's `--alias <id>`
        if model_id in argv and argv[argv.index(model_id) - 1] in ("serve", "--alias"):
            return record | {"pidfile": pidfile}
    raise AssertionError(f"no engine serves {model_id} in {home / 'engine'}")


def engine_pid(home: Path, model_id: str) -> int:
    return int(engine_record(home, model_id)["pid"])


class TalkTuahProcess:
    """One `talktuah serve` subprocess with its own TALKTUAH_HOME and port.

    Output goes to a log file so a failing test can show it; `stop()` escalates from SIGTERM
    to SIGKILL so no test can leave a server behind.
    """

    def __init__(
        self,
        home: Path,
        *,
        api_key: str | None,
        env: dict[str, str] | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
    ) -> None:
        self.home = home
        self.api_key = api_key
        self.host = host
        self.port = port or free_port()
        self.log_path = home.parent / f"talktuah-{self.port}.log"
        self.extra_env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TALKTUAH_"))}
        env.pop("PROXY_API_KEY", None)
        env.pop("DEFAULT_MODEL", None)
        env.update({"TALKTUAH_HOME": str(self.home), "HF_HUB_DISABLE_TELEMETRY": "1"})
        if self.api_key is not None:
            env["PROXY_API_KEY"] = self.api_key
        env.update(self.extra_env)
        return env

    def start(self, *, wait: bool = True, timeout: float = 30) -> TalkTuahProcess:
        cmd = [
            sys.executable, "-m", "talktuah", "serve",
            "--host", self.host, "--port", str(self.port),
        ]  # fmt: skip
        self.home.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            cmd, env=self.env(), stdout=log, stderr=subprocess.STDOUT, cwd=self.home.parent
        )
        log.close()
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 30) -> None:
        proc = self.proc
        assert proc is not None

        def healthz() -> int:
            if proc.poll() is not None:
                raise RuntimeError(f"talktuah serve exited {proc.returncode}:\n{self.log()}")
            return httpx.get(self.url + "/api/healthz", timeout=1).status_code

        eventually(
            healthz, lambda status: status == 200, timeout=timeout, interval=0.1,
            ignoring=(httpx.TransportError,), what=lambda: f"talktuah serve ready\n{self.log()}",
        )  # fmt: skip

    def wait_engine(self, model: str | None = None, timeout: float = 30) -> dict[str, object]:
        """Poll /api/model-loading-status until the engine is ready (serving `model`)."""
        with self.client() as client:
            status: dict[str, object] = eventually(
                lambda: client.get("/api/model-loading-status").json(),
                lambda s: s["status"] == "ready" and model in (None, s["serving_model"]),
                timeout=timeout, interval=0.1,
                what=lambda: f"the engine ready ({model or 'any model'})\n{self.log()[-3000:]}",
            )  # fmt: skip
        return status

    def status(self) -> dict[str, Any]:
        """`/api/model-loading-status` now."""
        with self.client() as client:
            body: dict[str, Any] = client.get("/api/model-loading-status").json()
        return body

    def wait_status(
        self, done: Callable[[dict[str, Any]], bool], timeout: float = 60
    ) -> dict[str, Any]:
        """Poll the engine status until `done(status)`; fail with it and the log tail."""
        return eventually(
            self.status, done, timeout=timeout, interval=0.1,
            what=lambda: f"the engine's status\n{self.log()[-3000:]}",
        )  # fmt: skip

    def wait_exit(self, timeout: float = 15) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def client(self, key: str | None = None) -> httpx.Client:
        token = key if key is not None else self.api_key
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout: float = 10) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
