"""Soak: N minutes of concurrent pulls, switches and streamed chats against the real server.

Not part of CI. Prints the server's RSS at the start and the end and the number of errors.

    python bench/soak.py --minutes 5 --workers 4            # stand-in engine (fast)
    python bench/soak.py --minutes 5 --engine tiny          # real transformers engine

Everything runs on this machine: a loopback test hub, `talktuah serve`, and the engine.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.constants import API_KEY  # noqa: E402
from tests.support.engine import FAKE_ENGINE, MODEL_FILES  # noqa: E402
from tests.support.hub import Hub, make_files  # noqa: E402
from tests.support.server import TalkTuahProcess  # noqa: E402
from tests.support.tiny_model import install_in_cache, tiny_chat_model_files  # noqa: E402


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=2.0)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--engine", choices=["fake", "tiny"], default="fake")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        home = root / "home"
        models = ["org/soak-a", "org/soak-b"]
        for seed, model in enumerate(models):
            files = tiny_chat_model_files(seed) if args.engine == "tiny" else MODEL_FILES
            install_in_cache(home / "models" / "hub", model, files | {"seed": bytes([seed])})
        hub = Hub(root / "hub")
        hub.start()
        for index in range(8):
            hub.add_repo(f"org/pull-{index}", make_files(n_files=2, size=2_000_000, seed=index))
        env = {"HF_ENDPOINT": hub.url, "DEFAULT_MODEL": models[0],
               "TALKTUAH_PROXY_RATE_LIMIT": "100000/minute",
               "TALKTUAH_RATE_LIMIT": "100000/minute", "TALKTUAH_MAX_STREAMS": "64"}  # fmt: skip
        if args.engine == "fake":
            env["TALKTUAH_ENGINE_EXECUTABLE"] = str(FAKE_ENGINE)
        server = TalkTuahProcess(home, api_key=API_KEY, env=env)
        server.start()
        assert server.proc is not None
        client = httpx.Client(base_url=server.url, timeout=120,
                              headers={"Authorization": f"Bearer {API_KEY}"})  # fmt: skip
        while client.get("/api/model-loading-status").json()["status"] != "ready":
            time.sleep(0.2)
        start_rss = rss_mb(server.proc.pid)
        outcomes: Counter[str] = Counter()
        lock = threading.Lock()
        deadline = time.monotonic() + args.minutes * 60

        failures: Counter[str] = Counter()

        def record(kind: str, ok: bool, detail: str = "") -> None:
            with lock:
                outcomes[f"{kind} {'ok' if ok else 'error'}"] += 1
                if not ok:
                    failures[f"{kind}: {detail}"[:160]] += 1

        def chat() -> None:
            served = client.get("/api/model-loading-status").json().get("serving_model")
            if not served:
                return
            body = {"model": served, "stream": True, "max_tokens": 16,
                    "messages": [{"role": "user", "content": "hello"}]}  # fmt: skip
            with client.stream("POST", "/v1/chat/completions", json=body) as response:
                lines = [line for line in response.iter_lines() if line.startswith("data:")]
            # 503 while a switch loads and 404 for a model switched away are expected; a
            # stream that began must end with [DONE] (a switch lets it finish)
            complete = bool(lines) and lines[-1] == "data: [DONE]"
            ok = (response.status_code == 200 and complete) or response.status_code in (404, 503)
            record("chat", ok, f"{response.status_code} {lines[:1]}")

        def pull() -> None:
            model = f"org/pull-{random.randrange(8)}"
            answer = client.post("/api/download-model", params={"model_id": model, "auto": "true"})
            record("pull", answer.status_code in (200, 202), f"{answer.status_code} {answer.text}")
            if random.random() < 0.5:
                client.delete("/api/delete-model", params={"model_id": model, "force": "true"})

        def switch() -> None:
            answer = client.post("/api/switch-model", params={"model_id": random.choice(models)})
            record(
                "switch", answer.status_code in (202, 409), f"{answer.status_code} {answer.text}"
            )

        def worker() -> None:
            actions = [chat, chat, chat, pull, switch]
            while time.monotonic() < deadline:
                action = random.choice(actions)
                try:
                    action()
                except httpx.HTTPError as exc:
                    record(action.__name__, False, repr(exc))

        threads = [threading.Thread(target=worker) for _ in range(args.workers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        end_rss = rss_mb(server.proc.pid)
        log = server.log()
        server.stop()
        hub.stop()
        errors = sum(n for key, n in outcomes.items() if key.endswith("error"))
        print(f"{'operation':<16}{'count':>8}")
        for key, count in sorted(outcomes.items()):
            print(f"{key:<16}{count:>8}")
        for failure, count in failures.most_common(10):
            print(f"  {count} x {failure}")
        if "Traceback" in log:  # the server's own account of what went wrong
            print(log[log.index("Traceback") - 400 :][:6000])
        print(f"server RSS: {start_rss:.1f} MB at start, {end_rss:.1f} MB at end")
        print(f"errors: {errors}")


if __name__ == "__main__":
    main()
