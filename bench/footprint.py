"""Footprint: the API server's resident memory, idle and after 1,000 requests.

The engine is excluded: TalkTuah runs with `TALKTUAH_ENGINE=external` pointed at the bench
upstream (bench/upstream.py, a separate process), so `/v1` requests are proxied for real but
no model lives in TalkTuah's process. Memory is VmRSS of the `talktuah serve` process only.

The 1,000 requests are a mix a dashboard and an automation tool would send: health, model
list, download progress, loading status, `/v1/models`, streamed and non-streamed chats, the
metrics page. After that, another 1,000 show whether memory keeps growing.

For scale, the table also shows a bare interpreter that imports what TalkTuah imports (the
floor for any server built on the same libraries). Target: <= 150 MB after 1,000 requests.

    python bench/footprint.py [--quick]
"""

from __future__ import annotations

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
    add_alt_src,
    alt_label,
    alt_src_env,
    parser,
    rss_mb,
    stop_process,
    table,
    verdict,
    write_results,
)
from proxy import MODEL, start_upstream

from tests.support.server import TalkTuahProcess
from tests.support.tiny_model import install_in_cache

TARGET_MB = 150.0
IMPORTS = (
    "import fastapi, uvicorn, httpx, huggingface_hub, pydantic_settings, sse_starlette, "
    "prometheus_client, limits, slowapi, typer, rich; import talktuah.api, talktuah.services"
)


def send_mix(client: httpx.Client, n: int) -> int:
    """`n` requests of a realistic mix; returns how many failed."""
    chat = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 16}
    failures = 0
    for index in range(n):
        kind = index % 10
        if kind in (0, 1):
            response = client.get("/api/download-progress")
        elif kind == 2:
            response = client.get("/api/models/local")
        elif kind == 3:
            response = client.get("/api/model-loading-status")
        elif kind == 4:
            response = client.get("/api/healthz")
        elif kind == 5:
            response = client.get("/v1/models")
        elif kind in (6, 7):
            with client.stream("POST", "/v1/chat/completions", json=chat | {"stream": True}) as r:
                for _ in r.iter_raw():
                    pass
                response = r
        elif kind == 8:
            response = client.post("/v1/chat/completions", json=chat | {"stream": False})
        else:
            response = client.get("/metrics")
        if response.status_code != 200:
            failures += 1
    return failures


def floor_rss() -> float:
    """RSS of an interpreter that only imports TalkTuah's libraries."""
    code = f"{IMPORTS}; import os, sys; print(os.getpid(), flush=True); sys.stdin.read()"
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        pid = int(proc.stdout.readline())
        time.sleep(0.5)
        return rss_mb(pid)
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        stop_process(proc)


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--requests", type=int, default=1000)
    add_alt_src(p)
    args = p.parse_args()
    n = 200 if args.quick else args.requests

    rows = []
    results: dict[str, Any] = {}
    floor = floor_rss()
    with tempfile.TemporaryDirectory(prefix="bench-footprint-") as tmp:
        root = Path(tmp)
        upstream, port = start_upstream(16)
        servers: dict[str, TalkTuahProcess] = {}
        try:
            variants = {"talktuah": None} | {
                f"talktuah ({alt_label(src)})": src for src in args.alt_src
            }
            for index, (name, src) in enumerate(variants.items()):
                home = root / f"tt{index}" / "home"
                for model in range(5):  # a few models, so the list is not empty
                    install_in_cache(home / "models" / "hub", f"bench/fp-{model}",
                                     {"config.json": b'{"model_type": "llama"}',
                                      "model.safetensors": bytes([model]) * 4096})  # fmt: skip
                env = {"TALKTUAH_ENGINE": "external",
                       "TALKTUAH_ENGINE_URL": f"http://127.0.0.1:{port}",
                       **HIGH_LIMITS, **alt_src_env(src)}  # fmt: skip
                server = TalkTuahProcess(home, api_key=API_KEY, env=env)
                servers[name] = server
                server.start()
            for name, server in servers.items():
                assert server.proc is not None
                pid = server.proc.pid
                with server.client() as client:
                    deadline = time.monotonic() + 30
                    while client.get("/api/model-loading-status").json()["status"] != "ready":
                        if time.monotonic() > deadline:
                            raise TimeoutError(server.log()[-2000:])
                        time.sleep(0.1)
                    time.sleep(2)  # settle: startup work done, engine attached
                    idle = rss_mb(pid)
                    failed = send_mix(client, n)
                    time.sleep(0.5)
                    after = rss_mb(pid)
                    failed += send_mix(client, n)
                    time.sleep(0.5)
                    after2 = rss_mb(pid)
                results[name] = {
                    "idle_mb": idle, "after_n_mb": after, "after_2n_mb": after2,
                    "requests": n, "failed": failed, "met": after <= TARGET_MB,
                }  # fmt: skip
                rows.append([name, idle, after, after2, failed])
                print(f"{name}: idle {idle:.1f} MB, after {n} {after:.1f} MB, "
                      f"after {2 * n} {after2:.1f} MB", flush=True)  # fmt: skip
        finally:
            for server in servers.values():
                server.stop()
            stop_process(upstream)

    rows.append(["floor: python + the same imports", floor, "-", "-", "-"])
    print()
    print(f"VmRSS of the API server (MiB), engine external, {n}-request mix")
    print(table(["process", "idle", f"after {n}", f"after {2 * n}", "failed"], rows))
    for name, r in results.items():
        print(f"target: {name} <= {TARGET_MB:.0f} MB after {n} requests: "
              f"{r['after_n_mb']:.1f} MB -> {verdict(r['met'])}")  # fmt: skip
    path = write_results(
        "footprint", {"quick": args.quick, "requests": n, "results": results,
                      "floor_imports_mb": floor, "target_mb": TARGET_MB},
    )  # fmt: skip
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
