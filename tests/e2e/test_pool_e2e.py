"""The engine pool through the real `talktuah serve` on llama.cpp (issue 18's "What must be
shown", on tiny GGUF models that are ready in well under a second).

Two servers for the module, each started once:

- `roomy`: `org/a-GGUF` is the default model and there is room for three. Two models answer
  alternately through the `openai` SDK with no switch and A's engine process stays the same;
  `keep_alive` 0 and "2s" unload, the default never unloads by idle time; a killed instance
  restarts with backoff while the other serves and a load during the backoff is accepted;
  a truncated .gguf fails with its log tail and leaves the others alone.
- `pair`: no default, room for two (TALKTUAH_MAX_LOADED_MODELS=2): a third model evicts the
  least recently used idle one, never one whose stream is in flight (the stream completes).
- `tight`: no default, and a TALKTUAH_MEMORY_BUDGET in bytes that fits one model, not two
  (1.5 times what TalkTuah estimates one of these models holds; each measures close to its
  estimate, and the test checks that one fits and two do not): A then B swaps, A's process
  is gone; 12 concurrent requests alternating A/B are collated into batches (A A A B B B,
  not A B A B), so they load a model at most 4 times, not 12.

Engine processes are told apart by their pidfiles (one per loaded model: engine.pid,
engine-2.pid, ...) and the `-m` each llama-server got.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from talktuah.config import Settings
from talktuah.engine.memory import estimate_bytes

from ..support.constants import API_KEY
from ..support.server import TalkTuahProcess
from ..support.tiny_gguf import tiny_gguf_bytes
from ..support.tiny_model import install_in_cache

pytestmark = pytest.mark.timeout(180)

A, B, C, BAD = "org/a-GGUF", "org/b-GGUF", "org/c-GGUF", "org/bad-GGUF"
COMMON = {
    "TALKTUAH_ENGINE_HEALTH_INTERVAL": "0.3",
    "TALKTUAH_ENGINE_STOP_TIMEOUT": "5",
    "TALKTUAH_ENGINE_THREADS": "1",
    "TALKTUAH_PROXY_LOAD_WAIT": "60",
    # The fairness test keeps three clients busy for as long as a load takes: far more than
    # the default 120 requests a minute of one key on a slow machine.
    "TALKTUAH_PROXY_RATE_LIMIT": "1000000/minute",
}


@functools.cache
def gguf(seed: int) -> bytes:
    """Built once for both servers' homes (building is most of this module's setup)."""
    return tiny_gguf_bytes(seed)


def install(home: Path) -> Path:
    models = home / "models" / "hub"
    for seed, model_id in enumerate((A, B, C), start=31):
        name = model_id.split("/")[1].split("-")[0]
        install_in_cache(models, model_id, {f"{name}-Q4_K_M.gguf": gguf(seed)})
    whole = gguf(34)
    install_in_cache(models, BAD, {"bad-Q4_K_M.gguf": whole[: len(whole) // 2]})
    return home


def start(home: Path, env: dict[str, str]) -> TalkTuahProcess:
    proc = TalkTuahProcess(home, api_key=API_KEY, env={**COMMON, **env})
    proc.start()
    return proc


@pytest.fixture(scope="module")
def roomy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TalkTuahProcess]:
    home = install(tmp_path_factory.mktemp("pool-roomy") / "home")
    proc = start(home, {"DEFAULT_MODEL": A, "TALKTUAH_ENGINE_RESTART_BACKOFF": "1.5"})
    try:
        until(lambda: ps(proc).get(A, {}).get("state") == "ready", proc, 60)
        yield proc
    finally:
        proc.stop()


def estimate(home: Path, model_id: str) -> int:
    """What TalkTuah expects `model_id` to hold before it loads (engine/memory.py)."""
    settings = Settings(home=home)
    name = model_id.split("/")[1].split("-")[0]
    path = next(settings.models_dir.rglob(f"{name}-Q4_K_M.gguf"))
    return estimate_bytes(settings, "llamacpp", weights_bytes=path.stat().st_size, gguf_file=path)


def room_for_one(home: Path) -> int:
    """`tight`'s budget: one of the three models (they are one shape) and a half."""
    return estimate(home, A) * 3 // 2


@pytest.fixture(scope="module")
def tight(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TalkTuahProcess]:
    home = install(tmp_path_factory.mktemp("pool-tight") / "home")
    proc = start(home, {"TALKTUAH_MEMORY_BUDGET": str(room_for_one(home))})
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TalkTuahProcess]:
    home = install(tmp_path_factory.mktemp("pool-pair") / "home")
    proc = start(home, {"TALKTUAH_MAX_LOADED_MODELS": "2"})
    try:
        yield proc
    finally:
        proc.stop()


# -- helpers ---------------------------------------------------------------------------------


def until(done: Callable[[], bool], proc: TalkTuahProcess, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(f"never got there; /api/ps: {ps(proc)}\n{proc.log()[-3000:]}")
        time.sleep(0.05)


def ps(proc: TalkTuahProcess) -> dict[str, dict[str, Any]]:
    with proc.client() as client:
        answer = client.get("/api/ps")
    assert answer.status_code == 200, answer.text
    return {row["model"]: row for row in answer.json()["models"]}


def sdk(proc: TalkTuahProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{proc.url}/v1", api_key=API_KEY, max_retries=0)


def ask(proc: TalkTuahProcess, model: str, **extra: Any) -> str:
    """One chat answer through the `openai` SDK; `extra` goes into the body (keep_alive)."""
    answer = sdk(proc).chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "hello"}],
        max_tokens=2,
        extra_body=extra or None,
    )
    assert answer.model == model
    return answer.choices[0].message.content or ""


def engine_pids(home: Path) -> dict[str, int]:
    """Model id -> pid of the llama-server serving it now, from every pidfile."""
    pids = {}
    for pidfile in (home / "engine").glob("engine*.pid"):
        try:
            record = json.loads(pidfile.read_text())
        except (OSError, ValueError):
            continue  # being written or removed right now
        argv: list[str] = record["argv"]
        begin = argv.index("talktuah.engine.llamacpp_server")  # after python's own -m
        model_file = Path(argv[argv.index("-m", begin) + 1]).name
        for model_id in (A, B, C, BAD):
            if model_file.startswith(model_id.split("/")[1].split("-")[0] + "-"):
                pids[model_id] = int(record["pid"])
    return pids


def alive(pid: int) -> bool:
    """Running (a zombie left for its parent to reap counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def metric(proc: TalkTuahProcess, prefix: str) -> float:
    text = httpx.get(f"{proc.url}/metrics").text
    return sum(float(ln.rsplit(" ", 1)[1]) for ln in text.splitlines() if ln.startswith(prefix))


# -- room for several ------------------------------------------------------------------------


def test_two_models_answer_alternately_with_no_switch(roomy: TalkTuahProcess) -> None:
    a_pid = engine_pids(roomy.home)[A]
    for model in (A, B, A, B, A):
        assert ask(roomy, model)
    loaded = ps(roomy)
    assert {loaded[A]["state"], loaded[B]["state"]} == {"ready"}
    assert loaded[A]["pinned"] and not loaded[B]["pinned"]
    assert loaded[A]["engine"] == loaded[B]["engine"] == "llamacpp"
    assert loaded[B]["memory_bytes"] > 0 and loaded[B]["expires_at"]
    pids = engine_pids(roomy.home)
    assert pids[A] == a_pid and alive(a_pid), "A's engine is the same process"
    assert pids[B] != a_pid and alive(pids[B])
    assert metric(roomy, f'talktuah_model_loads_total{{model="{B}"}}') == 1
    with roomy.client() as client:
        status = client.get("/api/model-loading-status").json()
        listed = {m["id"]: m["loaded"] for m in client.get("/v1/models").json()["data"]}
    assert status["serving_model"] == A, "the default is still A: no switch happened"
    assert listed[A] and listed[B] and not listed[C]


def test_keep_alive_zero_unloads_right_after_the_answer(roomy: TalkTuahProcess) -> None:
    assert ask(roomy, C, keep_alive=0)
    until(lambda: C not in ps(roomy), roomy, 10)
    assert C not in engine_pids(roomy.home)


def test_keep_alive_two_seconds_unloads_after_two_idle_seconds(roomy: TalkTuahProcess) -> None:
    assert ask(roomy, C, keep_alive="2s")
    answered = time.monotonic()
    assert ps(roomy)[C]["state"] == "ready"
    c_pid = engine_pids(roomy.home)[C]
    until(lambda: C not in ps(roomy), roomy, 15)
    idle = time.monotonic() - answered
    assert 1.5 <= idle <= 8, idle
    until(lambda: not alive(c_pid), roomy, 10)


def test_the_default_model_never_unloads_by_idle_time(roomy: TalkTuahProcess) -> None:
    a_pid = engine_pids(roomy.home)[A]
    assert ask(roomy, A, keep_alive=0)
    assert ask(roomy, A, keep_alive="1s")
    time.sleep(2.5)
    row = ps(roomy)[A]
    assert row["state"] == "ready" and row["pinned"] and row["expires_at"] is None
    assert engine_pids(roomy.home)[A] == a_pid and alive(a_pid)


def test_a_killed_instance_restarts_with_backoff_while_the_other_serves(
    roomy: TalkTuahProcess,
) -> None:
    assert ask(roomy, B)
    old = engine_pids(roomy.home)[B]
    a_pid = engine_pids(roomy.home)[A]
    os.kill(old, signal.SIGKILL)
    until(lambda: ps(roomy)[B]["state"] == "restarting", roomy, 10)
    assert ask(roomy, A), "the other model keeps serving during the backoff"
    with roomy.client() as client:
        load = client.post("/api/load-model", params={"model_id": B})
    assert load.status_code == 202, "a load during the backoff is accepted: " + load.text
    until(lambda: ps(roomy)[B]["state"] == "ready", roomy, 30)
    assert engine_pids(roomy.home)[B] != old and not alive(old)
    assert ask(roomy, B) and ask(roomy, A)
    assert engine_pids(roomy.home)[A] == a_pid


def test_a_model_that_fails_to_load_says_why_and_leaves_the_others_alone(
    roomy: TalkTuahProcess,
) -> None:
    before = engine_pids(roomy.home)
    with pytest.raises(openai.APIStatusError) as caught:
        ask(roomy, BAD)
    assert caught.value.status_code == 502
    detail = str(caught.value.body)
    assert f"{BAD} failed to load" in detail
    assert "The engine's log ends:" in detail and "Fix the cause" in detail
    loaded = ps(roomy)
    assert loaded[BAD]["state"] == "failed" and loaded[BAD]["error"]
    assert loaded[A]["state"] == loaded[B]["state"] == "ready"
    after = engine_pids(roomy.home)
    assert after[A] == before[A] and after[B] == before[B]
    assert ask(roomy, A) and ask(roomy, B)


# -- room for one ----------------------------------------------------------------------------


def test_a_budget_that_fits_one_model_swaps_a_then_b(tight: TalkTuahProcess) -> None:
    budget = room_for_one(tight.home)
    assert ask(tight, A)
    a_pid = engine_pids(tight.home)[A]
    a_memory = ps(tight)[A]["memory_bytes"]
    assert a_memory <= budget < a_memory + estimate(tight.home, B), "one fits, two do not"
    assert ask(tight, B)
    loaded = ps(tight)
    assert set(loaded) == {B} and loaded[B]["state"] == "ready"
    assert loaded[B]["memory_bytes"] <= budget
    until(lambda: not alive(a_pid), tight, 10)
    assert A not in engine_pids(tight.home), "A's pidfile is gone with its process"
    assert not Path(f"/proc/{a_pid}").exists(), "and its memory is the kernel's again"
    evictions = f'talktuah_model_evictions_total{{model="{A}",reason="memory_budget"}}'
    assert metric(tight, evictions) == 1
    assert ask(tight, A), "and back: B makes room for A"
    assert set(ps(tight)) == {A}


def test_concurrent_requests_alternating_two_models_are_collated(tight: TalkTuahProcess) -> None:
    loads = 'talktuah_model_loads_total{model="org/'
    before = metric(tight, loads)
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    headers = {"Authorization": f"Bearer {API_KEY}"}

    def post(model: str) -> httpx.Response:
        return httpx.post(
            f"{tight.url}/v1/chat/completions",
            json=body | {"model": model},
            headers=headers,
            timeout=90,
        )

    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(post, [A, B] * 6))
    assert [a.status_code for a in answers] == [200] * 12, [a.text for a in answers]
    assert [a.json()["model"] for a in answers] == [A, B] * 6
    assert metric(tight, loads) - before <= 4, "collated into batches, not a swap per request"
    assert len(ps(tight)) == 1


def test_a_model_kept_busy_does_not_starve_the_other(tight: TalkTuahProcess) -> None:
    """Fairness: with A never idle (three clients back to back), a request for B still gets
    its turn: A's new requests queue behind B instead of keeping A busy for ever."""
    assert ask(tight, A)
    done = False

    def keep_a_busy() -> list[int]:
        codes = []
        with tight.client() as client:
            while not done:
                body = {"model": A, "messages": [{"role": "user", "content": "hi"}]}
                answer = client.post("/v1/chat/completions", json=body | {"max_tokens": 8})
                codes.append(answer.status_code)
        return codes

    with ThreadPoolExecutor(3) as pool:
        busy = [pool.submit(keep_a_busy) for _ in range(3)]
        time.sleep(0.5)
        started = time.monotonic()
        try:
            assert ask(tight, B)
        finally:
            done = True
        waited = time.monotonic() - started
        codes = [code for future in busy for code in future.result(timeout=60)]
    assert waited < 20, waited
    assert codes and set(codes) == {200}


# -- room for two ----------------------------------------------------------------------------


def test_a_third_model_evicts_the_least_recently_used_idle_one(pair: TalkTuahProcess) -> None:
    assert ask(pair, A) and ask(pair, B)
    a_pid = engine_pids(pair.home)[A]
    assert ask(pair, C)
    until(lambda: set(ps(pair)) == {B, C}, pair, 10)
    until(lambda: not alive(a_pid), pair, 10)
    evicted = f'talktuah_model_evictions_total{{model="{A}",reason="max_loaded_models"}}'
    assert metric(pair, evicted) == 1


def test_a_model_with_a_stream_in_flight_is_never_evicted(pair: TalkTuahProcess) -> None:
    assert ask(pair, C) and ask(pair, B)  # C is now the least recently used
    body = {"model": C, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 32,
            "stream": True}  # fmt: skip
    headers = {"Authorization": f"Bearer {API_KEY}"}
    with httpx.stream("POST", f"{pair.url}/v1/chat/completions", json=body, headers=headers,
                      timeout=60) as stream:  # fmt: skip
        lines = stream.iter_lines()
        first = next(line for line in lines if line.startswith("data: "))
        assert ask(pair, A), "A loads in the place of B, the idle one"
        assert set(ps(pair)) == {A, C}
        rest = [line for line in lines if line.startswith("data: ")]
    assert json.loads(first[6:])["model"] == C
    assert rest[-1] == "data: [DONE]", "the stream completed"
    evicted = f'talktuah_model_evictions_total{{model="{B}",reason="max_loaded_models"}}'
    assert metric(pair, evicted) == 1
    assert metric(pair, f'talktuah_model_evictions_total{{model="{C}"') == 0
