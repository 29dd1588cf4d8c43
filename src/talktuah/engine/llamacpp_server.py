"""`python -m talktuah.engine.llamacpp_server <llama-server flags>`: llama.cpp's own HTTP
server, from the prebuilt `xllamacpp` wheel.

xllamacpp embeds llama-server's C++ server and routes; `xllamacpp.Server(params)` starts it
in a background thread. This launcher gives it llama-server's command line (the subset the
llamacpp driver passes, see engine/llamacpp.py), so one argument list works both here and
with a user's own `llama-server` binary (`TALKTUAH_ENGINE_EXECUTABLE`). It then waits for
SIGTERM/SIGINT and leaves at once: the process holds no state worth a clean shutdown, and
llama.cpp's server, asked to stop with a stream in flight, was seen to hang for 30 s.

Why not llama-cpp-python: it ships as an sdist only (12-35 min of compiling per fresh
machine) and its Python server adds ~17 ms per token (docs/engines.md).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Sequence

_POOLING = {"mean": "MEAN", "last": "LAST", "cls": "CLS", "none": "NONE", "rank": "RANK"}


def parse(argv: Sequence[str]) -> argparse.Namespace:
    """llama-server's flags, the subset TalkTuah uses, under llama-server's own names."""
    p = argparse.ArgumentParser(prog="talktuah-llama-server", allow_abbrev=False)
    p.add_argument("-m", "--model", required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("-a", "--alias", default=None)
    p.add_argument("-c", "--ctx-size", type=int, default=0)
    p.add_argument("-n", "--n-predict", type=int, default=-1)
    p.add_argument("-t", "--threads", type=int, default=-1)
    p.add_argument("-tb", "--threads-batch", type=int, default=-1)
    p.add_argument("-np", "--parallel", type=int, default=1)
    p.add_argument("--embeddings", "--embedding", action="store_true")
    p.add_argument("--pooling", choices=sorted(_POOLING), default=None)
    p.add_argument("--mmproj", default=None)
    p.add_argument("--metrics", action="store_true")
    p.add_argument("--jinja", action="store_true")
    p.add_argument("--no-warmup", action="store_true")
    p.add_argument("--offline", action="store_true")
    return p.parse_args(list(argv))


def main(argv: Sequence[str] | None = None) -> None:
    args = parse(sys.argv[1:] if argv is None else argv)
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = args.model
    params.hostnames = [args.host]
    params.port = args.port
    if args.alias:
        params.model_alias = {args.alias}
    params.n_ctx = args.ctx_size
    params.n_predict = args.n_predict
    params.cpuparams.n_threads = args.threads
    params.cpuparams_batch.n_threads = args.threads_batch
    params.n_parallel = args.parallel
    params.embedding = args.embeddings
    if args.pooling is not None:
        params.pooling_type = getattr(
            xllamacpp.llama_pooling_type, f"LLAMA_POOLING_TYPE_{_POOLING[args.pooling]}"
        )
    if args.mmproj:
        params.mmproj.path = args.mmproj
    params.endpoint_metrics = args.metrics
    params.use_jinja = args.jinja
    params.warmup = not args.no_warmup
    params.offline = args.offline

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    try:
        server = xllamacpp.Server(params)
    except Exception as exc:  # the model did not load: say why, as llama-server would
        print(f"llama.cpp could not load {args.model}: {exc}", file=sys.stderr, flush=True)
        sys.exit(1)
    print(f"llama.cpp server listening at {server.listening_address}", flush=True)
    stop.wait()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # the C++ server threads are not ours to join


if __name__ == "__main__":
    main()
