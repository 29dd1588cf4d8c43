"""The documentation's curl commands, run with real curl against a real `talktuah serve`.

docs/api/model-management.md is a walk through the API: its commands run in document
order, each must answer with the status written after it (`# -> 202`). Between two
commands the test waits until no download runs and no model loads, as a reader would.

Nothing the docs name is rewritten except the address (`http://localhost:8787` becomes the
test server) and the n8n webhook (it becomes a receiver in this test). The models are
published on the test Hub and put in the cache under the very ids the docs use, the key is
exported as `$PROXY_API_KEY`, and `$JOB_ID`, `$KEY_ID`, `$NEW_KEY` are exported from
earlier answers, as the page tells a reader to do. The engine is the stand-in engine
(tests/support/fake_engine.py) under the transformers driver, so switch and chat run for
real without a real model.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from ..support.eventually import eventually
from ..support.gguf_shapes import gguf_with_shape
from ..support.hub import Hub, make_files
from ..support.server import TalkTuahProcess
from ..support.tiny_model import install_in_cache
from .doc_examples import MODEL_MANAGEMENT, README, Example, curl_examples

KEY = "tt-docs-test-key-0123456789abcdefghij"
DOC_BASE = "http://localhost:8787"
DOC_WEBHOOK = "http://n8n:5678/webhook/talktuah-download"

DOWNLOADED = "Qwen/Qwen2.5-0.5B-Instruct"  # published on the test hub, downloaded by the docs
INSTALLED = "Qwen/Qwen2.5-1.5B-Instruct"  # already in the cache when the walk starts
GATED = "meta-llama/Llama-3.1-8B-Instruct"  # gated on the test hub; no HF_TOKEN is set
GGUF = "Qwen/Qwen2.5-0.5B-Instruct-GGUF"  # two quants, pulled one by one
TOO_BIG = "unsloth/Llama-3.3-70B-Instruct-GGUF"  # refused by the RAM check

TESTS = Path(__file__).resolve().parents[1]
FAKE_ENGINE = next(
    p for p in (TESTS / "support" / "fake_engine.py", TESTS / "engine" / "fake_engine.py")
    if p.exists()
)  # fmt: skip


@dataclass
class Webhook:
    """Stands in for the n8n Webhook node that `callback_url` points at."""

    url: str
    received: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)

    def wait(self, count: int, timeout: float = 15) -> None:
        eventually(lambda: len(self.received) >= count, timeout=timeout,
                   what=f"{count} callback POSTs at the webhook")  # fmt: skip


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    calls: list[tuple[str, str, dict[str, Any]]] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            return None

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            calls.append((self.path, self.headers.get("Content-Type", ""), json.loads(body)))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Webhook(f"http://127.0.0.1:{server.server_address[1]}/webhook/talktuah", calls)
    finally:
        server.shutdown()
        server.server_close()


def publish_gguf(hub: Hub) -> None:
    """The page's GGUF repos: a small model in two quants, and one whose header says a shape
    no test machine's RAM holds (a million layers), standing in for a 70B model."""
    small = {"layers": 2, "embedding": 64, "heads": 4, "kv_heads": 2}
    hub.add_repo(
        GGUF,
        {
            "README.md": b"# GGUF\n",
            "qwen2.5-0.5b-instruct-q4_k_m.gguf": gguf_with_shape(**small, padding=4_000),
            "qwen2.5-0.5b-instruct-q8_0.gguf": gguf_with_shape(**small, padding=8_000),
        },
    )
    huge = {"layers": 2**20, "embedding": 2**20, "heads": 1, "kv_heads": 1}
    hub.add_repo(
        TOO_BIG,
        {
            "Llama-3.3-70B-Instruct-Q2_K.gguf": gguf_with_shape(**huge, padding=2_000),
            "Llama-3.3-70B-Instruct-Q4_K_M.gguf": gguf_with_shape(**huge, padding=4_000),
        },
    )


def start_server(home: Path, hub: Hub) -> TalkTuahProcess:
    env = {
        "HF_ENDPOINT": hub.url,
        "TALKTUAH_ENGINE_EXECUTABLE": str(FAKE_ENGINE),
        "TALKTUAH_ENGINE_HEALTH_INTERVAL": "0.2",
        "TALKTUAH_ENGINE_STOP_TIMEOUT": "3",
        "TALKTUAH_DOWNLOAD_CALLBACK_RETRIES": "0",
        "TALKTUAH_CALLBACK_ALLOW": "127.0.0.1",  # the stand-in Webhook node is on loopback
    }
    return TalkTuahProcess(home, api_key=KEY, env=env).start()


def settle(server: TalkTuahProcess, timeout: float = 20) -> None:
    """Wait, as a reader would, until no download runs and no model loads."""
    with server.client() as client:

        def settled() -> bool:
            jobs = client.get("/api/downloads").json()["downloads"]
            engine = client.get("/api/model-loading-status").json()
            live = [j for j in jobs if j["status"] in ("queued", "downloading")]
            return not live and engine["engine_state"] != "loading"

        eventually(settled, timeout=timeout,
                   what=lambda: f"the server settling\n{server.log()[-3000:]}")  # fmt: skip


def shell_env(variables: dict[str, str]) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TALKTUAH_", "HF_")) and k not in ("PROXY_API_KEY", "KEY", "M")
    }
    env.update(variables)
    return env


def run_curl(command: str, env: dict[str, str], out: Path) -> tuple[int, str]:
    """Run the documented command in bash (so `$PROXY_API_KEY` expands as for a reader)."""
    argv = f"{command} -o {out} -w '%{{http_code}}' --max-time 20"
    done = subprocess.run(
        ["bash", "-c", argv], env=env, capture_output=True, text=True, timeout=30
    )  # fmt: skip
    assert done.returncode == 0, f"curl failed ({done.returncode}): {argv}\n{done.stderr}"
    return int(done.stdout.strip()), out.read_text(errors="replace") if out.exists() else ""


def json_body(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def failure(example: Example, code: int, body: str, server: TalkTuahProcess) -> str:
    return (
        f"{example.source}: expected {example.expected}, got {code}\n"
        f"  {example.command}\n  body: {body[:800]}\n--- server log ---\n{server.log()[-2000:]}"
    )


def test_model_management_examples_answer_as_documented(
    tmp_path: Path, hub: Hub, webhook: Webhook
) -> None:
    examples = curl_examples(MODEL_MANAGEMENT)
    assert len(examples) >= 30, "the page lost its examples"
    unannotated = [e.source for e in examples if e.expected is None]
    assert not unannotated, f"curl lines without '# -> <status>': {unannotated}"

    hub.add_repo(DOWNLOADED, make_files(n_files=2, size=40_000, seed=7))
    hub.add_repo(GATED, make_files(n_files=1, size=1_000, seed=8), gated=True)
    publish_gguf(hub)
    home = tmp_path / "home"
    install_in_cache(home / "models" / "hub", INSTALLED, {"config.json": b"{}", "model.bin": b"w"})
    server = start_server(home, hub)
    try:
        variables = {"PROXY_API_KEY": KEY}
        for index, example in enumerate(examples):
            command = example.command.replace(DOC_BASE, server.url)
            command = command.replace(DOC_WEBHOOK, webhook.url)
            code, body = run_curl(command, shell_env(variables), tmp_path / f"answer-{index}")
            assert code == example.expected, failure(example, code, body, server)
            answer = json_body(body)
            if isinstance(answer, dict):
                if answer.get("job_id"):
                    variables["JOB_ID"] = str(answer["job_id"])
                if "/api/keys" in command and "key" in answer and "id" in answer:
                    variables["KEY_ID"], variables["NEW_KEY"] = answer["id"], answer["key"]
            settle(server)

        # The callback_url example: one POST with the final job, as GET /api/downloads/{id}.
        webhook.wait(1)
        assert len(webhook.received) == 1, webhook.received
        path, content_type, payload = webhook.received[0]
        assert path == "/webhook/talktuah" and content_type.startswith("application/json")
        assert payload["status"] == "complete" and payload["model_id"] == DOWNLOADED
        assert payload["activate"] is True and payload["allow_patterns"] == [
            "*.json",
            "*.safetensors",
        ]
        with server.client() as client:
            job = client.get(f"/api/downloads/{payload['job_id']}").json()
        assert set(payload) == set(job)
    finally:
        server.stop()


def test_readme_examples_reach_real_routes(tmp_path: Path, hub: Hub) -> None:
    """The README's tour (no status annotations): right routes, parameters and auth.

    Its last command deletes the model the tour just switched to without `force`, which
    the API refuses with 400 (the active model); everything else must succeed.
    """
    examples = [e for e in curl_examples(README) if DOC_BASE in e.command]
    assert examples, "README.md lost its curl examples against http://localhost:8787"
    hub.add_repo(DOWNLOADED, make_files(n_files=2, size=20_000, seed=9))
    server = start_server(tmp_path / "home", hub)
    try:
        variables = {"KEY": KEY, "PROXY_API_KEY": KEY, "M": DOWNLOADED}
        for index, example in enumerate(examples):
            command = example.command.replace(DOC_BASE, server.url)
            command = re.sub(r"(?<![$\w])JOB_ID\b", variables.get("JOB_ID", "JOB_ID"), command)
            code, body = run_curl(command, shell_env(variables), tmp_path / f"readme-{index}")
            refused_active = "delete-model" in command and "force=false" in command
            allowed = {200, 201, 202} | ({400} if refused_active else set())
            assert code in allowed, failure(example, code, body, server)
            answer = json_body(body)
            if isinstance(answer, dict) and answer.get("job_id"):
                variables["JOB_ID"] = str(answer["job_id"])
            settle(server)
    finally:
        server.stop()
