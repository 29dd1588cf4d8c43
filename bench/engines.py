"""CPU engines on one model shape: `transformers serve` against llama.cpp's server, and
TalkTuah-proxied llama.cpp against llama.cpp direct.

The model is built here with random weights: a Llama at Qwen2.5-0.5B-Instruct's dimensions
(hidden 896, 24 layers, 14 heads, 2 KV heads, MLP 4864, vocab 151,936, tied embeddings; Qwen2's
q/k/v biases left out), saved as safetensors for transformers and converted to GGUF F16 and
Q8_0 with tests/support/tiny_gguf.py (gguf-py cannot write K-quants, so no Q4_K_M row). Each
engine runs with one thread (`TALKTUAH_ENGINE_THREADS`'s default on 2 CPUs) and answers the
same streamed chat of `--tokens` tokens; rounds alternate the engines, medians are reported.

    python bench/engines.py [--quick] [--rounds 3] [--tokens 128]

Rows: ready time (launch to `/health` 200 with the model listed), time to first token, decode
tokens/s after the first token, peak RSS of the engine process tree (VmHWM), and what the
engine pool estimates the model holds before its first load (engine/memory.py: the files,
llama.cpp's KV cache of the context from the GGUF header, the engine's runtime). Then TalkTuah
(`talktuah serve`, engine auto) in front of the same llama.cpp process, against that
process's own port, in alternating requests: decode tokens/s ratio (goal >= 0.95x).
`--quick` uses a 4-layer model with a 32k vocabulary.
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
    ratio,
    stop_process,
    table,
    verdict,
    write_results,
)

from talktuah.config import Settings
from talktuah.engine.memory import MIB, estimate_bytes
from tests.support.server import TalkTuahProcess
from tests.support.tiny_gguf import write_gguf
from tests.support.tiny_model import install_in_cache

QWEN_05B = {
    "hidden_size": 896, "num_hidden_layers": 24, "num_attention_heads": 14,
    "num_key_value_heads": 2, "intermediate_size": 4864, "vocab_size": 151936,
    "max_position_embeddings": 32768, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
}  # fmt: skip
QUICK = QWEN_05B | {"num_hidden_layers": 4, "vocab_size": 32000}
PROMPT = [{"role": "user", "content": "Tell me about the quick brown fox and the lazy dog."}]
GOAL_PROXY = 0.95


def build_model(out: Path, shape: dict[str, Any]) -> None:
    """A random-weight Llama of `shape` with a byte-level BPE padded to its vocabulary."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from tests.support.tiny_model import CHAT_TEMPLATE, SENTENCES

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1000, special_tokens=["<|bos|>", "<|eos|>", "<|pad|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )  # fmt: skip
    tokenizer.train_from_iterator(SENTENCES, trainer)
    # Plain-text filler tokens up to the model's vocabulary, so both engines decode every id.
    filler = shape["vocab_size"] - tokenizer.get_vocab_size()
    tokenizer.add_tokens([f"w{i}" for i in range(filler)])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<|bos|>", eos_token="<|eos|>", pad_token="<|pad|>"
    )
    fast.chat_template = CHAT_TEMPLATE
    torch.manual_seed(0)
    config = LlamaConfig(
        **shape, tie_word_embeddings=True, bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id, pad_token_id=fast.pad_token_id,
    )  # fmt: skip
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        for token_id in fast.all_special_ids:  # never the likeliest token: no early stop
            model.get_input_embeddings().weight[token_id].zero_()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    fast.save_pretrained(out)


def rss_peak_mb(pid: int) -> float:
    """VmHWM of `pid` and its children (the engine may fork), in MiB."""
    total = 0
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(c) for c in children.read_text().split()]
    for one in pids:
        try:
            for line in Path(f"/proc/{one}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def estimate_mb(name: str, model_dir: Path, ggufs: dict[str, Path]) -> float:
    """What the pool expects `name`'s engine to hold before measuring it, in MiB (the
    context is the 4096 tokens `launch` gives llama.cpp, TALKTUAH_ENGINE_CTX's default)."""
    settings = Settings(home=model_dir.parent / "estimate-home", engine_ctx=4096)
    if name.startswith("llama"):
        gguf = ggufs[name.split()[-1]]
        return estimate_bytes(settings, "llamacpp", weights_bytes=gguf.stat().st_size,
                              gguf_file=gguf) / MIB  # fmt: skip
    weights = sum(f.stat().st_size for f in model_dir.glob("*.safetensors"))
    return estimate_bytes(settings, "transformers", weights_bytes=weights) / MIB


def stream_chat(url: str, model: str, tokens: int, headers: dict[str, str] | None = None,
                llama: bool = True) -> tuple[float, float, int]:  # fmt: skip
    """(time to first token, decode tokens/s after it, tokens) of one streamed chat.

    llama.cpp is told to ignore end-of-sequence (transformers serve refuses unknown fields;
    its random model's special tokens are zeroed, so it rarely stops early)."""
    body: dict[str, Any] = {"model": model, "messages": PROMPT, "max_tokens": tokens,
                            "stream": True}  # fmt: skip
    if llama:
        body["ignore_eos"] = True
    started = time.perf_counter()
    first = None
    count = 0
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, headers=headers,
                      timeout=600) as response:  # fmt: skip
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data: {"):
                continue
            event = json.loads(line[6:])
            if event.get("choices") and event["choices"][0].get("delta", {}).get("content"):
                count += 1
                if first is None:
                    first = time.perf_counter()
    end = time.perf_counter()
    assert first is not None, "no token came back"
    rate = (count - 1) / (end - first) if count > 1 else float("nan")
    return first - started, rate, count


def launch(name: str, model_dir: Path, gguf: Path | None, port: int, home: Path
           ) -> subprocess.Popen[bytes]:  # fmt: skip
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", HF_HOME=str(home))
    if name.startswith("transformers"):
        dtype = name.split()[-1]
        argv = ["transformers", "serve", str(model_dir), "--port", str(port), "--dtype", dtype]
    else:
        argv = [sys.executable, "-m", "talktuah.engine.llamacpp_server", "-m", str(gguf),
                "--port", str(port), "-a", str(model_dir), "-c", "4096", "-t", "1", "-tb", "1",
                "--jinja", "--offline"]  # fmt: skip
    log = (home / f"{name.replace(' ', '-')}.log").open("wb")
    return subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)


def ready(url: str, model: str, proc: subprocess.Popen[bytes], timeout: float = 600) -> float:
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"engine exited {proc.returncode}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                listed = [m["id"] for m in httpx.get(f"{url}/v1/models", timeout=5).json()["data"]]
                if model in listed or not listed or listed[0].startswith(model):
                    return time.perf_counter() - started
        except (httpx.TransportError, KeyError, ValueError):
            pass
        time.sleep(0.05)
    raise TimeoutError("engine not ready")


def engines_part(root: Path, model_dir: Path, ggufs: dict[str, Path], rounds: int, tokens: int,
                 names: list[str]) -> dict[str, dict[str, list[float]]]:  # fmt: skip
    data: dict[str, dict[str, list[float]]] = {n: {"ready": [], "ttft": [], "tps": [], "rss": []}
                                               for n in names}  # fmt: skip
    for round_no in range(rounds):
        for name in names:
            port = free_port()
            gguf = ggufs.get(name.split()[-1])
            model = str(model_dir)
            proc = launch(name, model_dir, gguf, port, root)
            try:
                url = f"http://127.0.0.1:{port}"
                data[name]["ready"].append(ready(url, model, proc))
                if name.startswith("transformers"):
                    model = httpx.get(f"{url}/v1/models").json()["data"][0]["id"]
                llama = name.startswith("llama")
                stream_chat(url, model, 4, llama=llama)  # warm-up: first-call costs
                ttft, tps, _count = stream_chat(url, model, tokens, llama=llama)
                data[name]["ttft"].append(ttft)
                data[name]["tps"].append(tps)
                data[name]["rss"].append(rss_peak_mb(proc.pid))
            finally:
                stop_process(proc)
            print(f"round {round_no + 1}: {name}: {data[name]['tps'][-1]:.2f} tok/s", flush=True)
    return data


def proxy_part(root: Path, gguf: Path, rounds: int, tokens: int) -> dict[str, list[float]]:
    """TalkTuah in front of llama.cpp against that same llama.cpp process, alternating."""
    home = root / "proxy-home"
    install_in_cache(home / "models" / "hub", "bench/model-GGUF",
                     {"model-Q8_0.gguf": gguf.read_bytes()})  # fmt: skip
    env = HIGH_LIMITS | {"DEFAULT_MODEL": "bench/model-GGUF", "TALKTUAH_ENGINE_THREADS": "1"}
    server = TalkTuahProcess(home, api_key=API_KEY, env=env).start(timeout=60)
    out: dict[str, list[float]] = {"talktuah": [], "direct": []}
    try:
        deadline = time.monotonic() + 600
        with server.client() as client:
            while client.get("/api/model-loading-status").json()["status"] != "ready":
                if time.monotonic() > deadline:
                    raise TimeoutError("TalkTuah's engine not ready")
                time.sleep(0.2)
        argv = json.loads((home / "engine" / "engine.pid").read_text())["argv"]
        direct = f"http://127.0.0.1:{argv[argv.index('--port') + 1]}"
        headers = {"Authorization": f"Bearer {API_KEY}"}
        stream_chat(server.url, "bench/model-GGUF", 4, headers)
        for _ in range(rounds * 2):
            out["talktuah"].append(stream_chat(server.url, "bench/model-GGUF", tokens, headers)[1])
            out["direct"].append(stream_chat(direct, "bench/model-GGUF", tokens)[1])
    finally:
        server.stop()
    return out


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--rounds", type=int, default=None)
    p.add_argument("--tokens", type=int, default=None)
    args = p.parse_args()
    rounds = args.rounds or (1 if args.quick else 3)
    tokens = args.tokens or (32 if args.quick else 128)
    shape = QUICK if args.quick else QWEN_05B
    with tempfile.TemporaryDirectory(prefix="bench-engines-") as tmp:
        root = Path(tmp)
        model_dir = root / "model"
        started = time.perf_counter()
        build_model(model_dir, shape)
        ggufs = {q: write_gguf(model_dir, root / f"model-{q}.gguf", storage=q)
                 for q in ("F16", "Q8_0")}  # fmt: skip
        print(f"built the model in {time.perf_counter() - started:.0f} s", flush=True)
        names = ["transformers float32", "transformers bfloat16", "llama.cpp F16", "llama.cpp Q8_0"]
        data = engines_part(root, model_dir, ggufs, rounds, tokens, names)
        estimates = {name: estimate_mb(name, model_dir, ggufs) for name in names}
        proxied = proxy_part(root, ggufs["Q8_0"], rounds, tokens)

    base = median(data["transformers float32"]["tps"])
    rows = []
    results: dict[str, Any] = {}
    for name in names:
        m = {k: median(v) for k, v in data[name].items()}
        results[name] = m
        m["estimate"] = estimates[name]
        rows.append([name, m["ready"], m["ttft"] * 1000, m["tps"], ratio(m["tps"], base), m["rss"],
                     m["estimate"]])  # fmt: skip
    print()
    print(f"{'Qwen2.5-0.5B shape' if not args.quick else 'quick shape'}, one thread, "
          f"{tokens} streamed tokens, medians of {rounds} alternating rounds")  # fmt: skip
    print(table(["engine", "ready s", "TTFT ms", "decode tok/s", "x transformers fp32",
                 "peak RSS MiB", "estimate MiB"], rows))  # fmt: skip
    through, direct = median(proxied["talktuah"]), median(proxied["direct"])
    proxy_ratio = ratio(through, direct)
    print()
    pairs = [["direct", direct], ["through TalkTuah", through]]
    print(table(["llama.cpp Q8_0", "decode tok/s"], pairs))
    print(f"target: TalkTuah-proxied >= {GOAL_PROXY}x direct: {proxy_ratio:.3f}x -> "
          f"{verdict(proxy_ratio >= GOAL_PROXY)}")  # fmt: skip
    path = write_results("engines", {"quick": args.quick, "rounds": rounds, "tokens": tokens,
                                     "shape": shape, "engines": results,
                                     "proxy": {"talktuah_tps": through, "direct_tps": direct,
                                               "ratio": proxy_ratio}})  # fmt: skip
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
