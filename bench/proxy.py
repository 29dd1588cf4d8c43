"""Proxy overhead: streamed chat through TalkTuah's /v1 vs straight to the engine vs nginx.

Part 1, the proxy alone: a fast OpenAI-compatible upstream (bench/upstream.py: a fixed stream
of SSE tokens, no model) is reached five ways at concurrency 1, 16 and 64:
  - directly,
  - through TalkTuah (`TALKTUAH_ENGINE=external`, `TALKTUAH_ENGINE_URL=<upstream>`),
  - through bench/minimal_proxy.py, uvicorn + one pooled client and nothing else: the floor
    of the stack TalkTuah is built on, once with TalkTuah's engine client (httpx on aiohttp)
    and once with a plain httpx.AsyncClient (h11, what TalkTuah used before),
  - through Debian's nginx (bench/nginx.conf, `proxy_buffering off`, one worker), the lower
    bound of what any reverse proxy adds.
"proxy CPU us/req" is the user + system CPU time of the proxy's process (nginx: master and
worker) per request, read from /proc around each run: on a shared machine it is steadier
than latency.
Each round runs a fixed number of streamed `POST /v1/chat/completions` per target, in a rotated
order; time to first byte (first body byte) is pooled over rounds for p50/p99, req/s is the
median of the rounds. The load generator runs in this process on uvloop: a lean asyncio
HTTP/1.1 client by default (one keep-alive connection per concurrent stream), or
httpx.AsyncClient with `--client httpx` (which itself saturates a core here; see RawConnection).

Part 2, the real engine: `transformers serve` with a tiny random model (tests/support), at
concurrency 1, through TalkTuah and through the two floors vs straight to the same engine
process, with TalkTuah's defaults (the engine gets all CPUs but one:
TALKTUAH_ENGINE_THREADS). `--engine-env TALKTUAH_ENGINE_THREADS=2` adds a run with other
settings, e.g. one thread per CPU.

Targets: added TTFB p50 <= 1 ms and p99 <= 5 ms; req/s >= 0.9x direct.

    python bench/proxy.py [--quick] [--rounds 3] [--no-nginx] [--no-engine] [--engine-env N=V]

All three proxies, the upstream and the load generator share this machine's cores, so req/s
at high concurrency is a measure of CPU per request on a saturated box, not of a network.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from _common import (
    API_KEY,
    HIGH_LIMITS,
    ROOT,
    add_alt_src,
    alt_label,
    alt_src_env,
    cpu_seconds,
    free_port,
    launch,
    median,
    parser,
    percentile,
    ratio,
    stop_process,
    table,
    verdict,
    write_results,
)

from tests.support.server import TalkTuahProcess

MODEL = "bench/fast"
TINY = "bench/tiny"
TARGET_P50_MS = 1.0
TARGET_P99_MS = 5.0
TARGET_RPS = 0.9
CONCURRENCY = (1, 16, 64)
#: bench/minimal_proxy.py: what uvicorn + the engine client cost before TalkTuah does
#: anything, with TalkTuah's engine client (httpx on aiohttp) and with plain httpx (h11).
FLOORS = {"engine": "floor: uvicorn+engine client", "httpx": "floor: uvicorn+plain httpx"}


@dataclass
class Target:
    name: str
    url: str  # the chat completions URL
    samples: dict[int, list[float]] = field(default_factory=dict)  # concurrency -> TTFB (s)
    rps: dict[int, list[float]] = field(default_factory=dict)  # concurrency -> per round
    errors: int = 0
    pid: int | None = None  # the proxy's process, for its CPU time per request
    children: bool = False  # count its children too (nginx's worker; not TalkTuah's engine)
    cpu: dict[int, list[float]] = field(default_factory=dict)  # concurrency -> s per request


# -- load generation -------------------------------------------------------------------------


class RawConnection:
    """One keep-alive HTTP/1.1 connection that sends a fixed request and reads the answer.

    Why not only httpx: on two cores the load generator shares the CPU with the proxy and the
    upstream, and httpx.AsyncClient costs far more per request than what it measures (it
    tops out near 650 streamed req/s against this upstream at concurrency 16, with a p99
    above 100 ms of its own queueing). This client costs a few tens of microseconds.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, raw: bytes) -> tuple[float | None, bool]:
        """Send `raw`; return (seconds to the first body byte, whether it streamed SSE).

        Like every HTTP client, a request whose kept-alive connection the server had closed
        in the meantime (uvicorn does after 5 s idle) is sent once more on a new connection
        when not a byte of the answer came back; it is not counted as an error.
        """
        reused = self.writer is not None and not self.writer.is_closing()
        if not reused:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        reader, writer = self.reader, self.writer
        assert reader is not None and writer is not None
        started = time.perf_counter()
        writer.write(raw)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            if not reused or (isinstance(exc, asyncio.IncompleteReadError) and exc.partial):
                raise
            await self.close()
            return await self.request(raw)
        status = int(head[9:12])
        lower = head.lower()
        first: float | None = None
        seen_data = False
        if b"transfer-encoding: chunked" in lower:
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if first is None:
                    first = time.perf_counter() - started
                if size == 0:
                    await reader.readuntil(b"\r\n")
                    break
                chunk = await reader.readexactly(size + 2)
                seen_data = seen_data or b"data:" in chunk
        else:
            length = int(lower.split(b"content-length:")[1].split(b"\r\n")[0])
            body = await reader.readexactly(length)
            first = time.perf_counter() - started
            seen_data = b"data:" in body
        if b"connection: close" in lower:
            await self.close()
        return first, status == 200 and seen_data

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class Load:
    """A fixed number of streamed chats at a fixed concurrency against one target."""

    def __init__(self, target: Target, body: bytes, client: str, concurrency: int) -> None:
        self.target = target
        self.body = body
        self.kind = client
        url = httpx.URL(target.url)
        self.raw = (
            f"POST {url.raw_path.decode()} HTTP/1.1\r\nHost: {url.host}:{url.port}\r\n"
            f"Authorization: Bearer {API_KEY}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        self.conns = [RawConnection(url.host, url.port or 80) for _ in range(concurrency)]
        limits = httpx.Limits(max_connections=concurrency + 8, max_keepalive_connections=None)
        self.http = httpx.AsyncClient(timeout=120, limits=limits)

    async def close(self) -> None:
        for conn in self.conns:
            await conn.close()
        await self.http.aclose()

    async def _one_httpx(self) -> tuple[float | None, bool]:
        headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
        started = time.perf_counter()
        first: float | None = None
        seen = b""
        async with self.http.stream(
            "POST", self.target.url, content=self.body, headers=headers
        ) as response:
            async for chunk in response.aiter_raw():
                if first is None:
                    first = time.perf_counter() - started
                seen = chunk
        return first, response.status_code == 200 and b"data:" in seen

    async def run(self, n: int, concurrency: int) -> tuple[list[float], float, int]:
        """Send `n` requests with `concurrency` in flight; TTFBs, req/s and errors."""
        todo = iter(range(n))
        ttfbs: list[float] = []
        errors = 0

        async def worker(conn: RawConnection) -> None:
            nonlocal errors
            for _ in todo:
                try:
                    if self.kind == "raw":
                        first, ok = await conn.request(self.raw)
                    else:
                        first, ok = await self._one_httpx()
                except (OSError, asyncio.IncompleteReadError, ValueError, httpx.HTTPError):
                    await conn.close()
                    first, ok = None, False
                if ok and first is not None:
                    ttfbs.append(first)
                else:
                    errors += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker(conn) for conn in self.conns[:concurrency]))
        elapsed = time.perf_counter() - started
        return ttfbs, (n - errors) / elapsed, errors


async def measure(
    targets: list[Target],
    model: str,
    concurrencies: tuple[int, ...],
    counts: dict[int, int],
    rounds: int,
    client: str = "raw",
    max_tokens: int = 16,
) -> None:
    body = json.dumps(
        {"model": model, "stream": True, "max_tokens": max_tokens,
         "messages": [{"role": "user", "content": "hello there"}]}
    ).encode()  # fmt: skip
    top = max(concurrencies)
    loads = {t.name: Load(t, body, client, top) for t in targets}
    try:
        for load in loads.values():  # warm up: connections open, first-request costs paid
            await load.run(top, top)
        for index in range(rounds):
            for concurrency in concurrencies:
                shift = index % len(targets)
                for target in targets[shift:] + targets[:shift]:
                    cpu_before = process_cpu(target.pid, target.children)
                    ttfbs, rps, errors = await loads[target.name].run(
                        counts[concurrency], concurrency
                    )
                    if target.pid is not None:
                        used = process_cpu(target.pid, target.children) - cpu_before
                        target.cpu.setdefault(concurrency, []).append(used / counts[concurrency])
                    target.samples.setdefault(concurrency, []).extend(ttfbs)
                    target.rps.setdefault(concurrency, []).append(rps)
                    target.errors += errors
                    print(
                        f"round {index + 1} c={concurrency:<3} {target.name:<22} "
                        f"{rps:8.0f} req/s  p50 {percentile(ttfbs, 50) * 1000:6.2f} ms"
                        + (f"  {errors} errors" if errors else ""),
                        flush=True,
                    )
    finally:
        for load in loads.values():
            await load.close()


def process_cpu(pid: int | None, children: bool = False) -> float:
    """CPU seconds of `pid` (bench/_common.cpu_seconds), plus its children's if asked."""
    if pid is None:
        return 0.0
    pids = [pid]
    if children:
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                if stat.read_text().rsplit(")", 1)[1].split()[1] == str(pid):
                    pids.append(int(stat.parent.name))
            except (OSError, IndexError):
                continue  # a process that ended while we looked
    total = 0.0
    for each in pids:
        try:
            total += cpu_seconds(each)
        except OSError:
            continue
    return total


def run_async(coro: Any) -> Any:
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:
        return asyncio.run(coro)


# -- the servers -----------------------------------------------------------------------------


def start_upstream(tokens: int) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    argv = [sys.executable, str(ROOT / "bench" / "upstream.py"), "--port", str(port),
            "--tokens", str(tokens)]  # fmt: skip
    proc = launch(argv, f"http://127.0.0.1:{port}/v1/models", stdout=subprocess.DEVNULL)
    return proc, port


def start_floor(upstream_url: str, client: str) -> tuple[subprocess.Popen[bytes], int]:
    """bench/minimal_proxy.py: uvicorn + one pooled client and nothing else."""
    port = free_port()
    argv = [sys.executable, str(ROOT / "bench" / "minimal_proxy.py"), "--port", str(port),
            "--upstream", upstream_url, "--client", client]  # fmt: skip
    proc = launch(argv, f"http://127.0.0.1:{port}/v1/models", stdout=subprocess.DEVNULL)
    return proc, port


def start_nginx(prefix: Path, upstream_port: int) -> tuple[subprocess.Popen[bytes], int]:
    """Debian's nginx with bench/nginx.conf rendered for this run's ports, in the foreground."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    port = free_port()
    prefix.mkdir(parents=True, exist_ok=True)
    conf = (ROOT / "bench" / "nginx.conf").read_text()
    conf = conf.replace("@LISTEN_PORT@", str(port)).replace("@UPSTREAM_PORT@", str(upstream_port))
    conf_path = prefix / "nginx.conf"
    conf_path.write_text(conf)
    argv = [nginx, "-c", str(conf_path), "-p", str(prefix), "-e", str(prefix / "error.log")]
    proc = launch(
        argv, f"http://127.0.0.1:{port}/v1/models",
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    return proc, port


def start_talktuah(home: Path, env: dict[str, str], timeout: float = 120) -> TalkTuahProcess:
    server = TalkTuahProcess(home, api_key=API_KEY, env={**HIGH_LIMITS, **env})
    try:
        server.start()
        with server.client() as client:
            deadline = time.monotonic() + timeout
            while client.get("/api/model-loading-status").json()["status"] != "ready":
                if time.monotonic() > deadline:
                    raise TimeoutError(f"TalkTuah's engine not ready:\n{server.log()[-3000:]}")
                time.sleep(0.1)
    except BaseException:
        server.stop()
        raise
    return server


def engine_port(home: Path) -> int:
    """The port of the engine TalkTuah launched, from the argv in its pidfile."""
    argv = json.loads((home / "engine" / "engine.pid").read_text())["argv"]
    return int(argv[argv.index("--port") + 1])


# -- reporting -------------------------------------------------------------------------------


def summarize(targets: list[Target], baseline: str) -> dict[str, Any]:
    base = next(t for t in targets if t.name == baseline)
    out: dict[str, Any] = {}
    for target in targets:
        per: dict[str, Any] = {}
        for concurrency, samples in target.samples.items():
            p50 = percentile(samples, 50) * 1000
            p99 = percentile(samples, 99) * 1000
            b50 = percentile(base.samples[concurrency], 50) * 1000
            b99 = percentile(base.samples[concurrency], 99) * 1000
            rps = median(target.rps[concurrency])
            per[str(concurrency)] = {
                "requests": len(samples),
                "ttfb_p50_ms": p50,
                "ttfb_p99_ms": p99,
                "added_p50_ms": p50 - b50,
                "added_p99_ms": p99 - b99,
                "rps": rps,
                "rps_rounds": target.rps[concurrency],
                "rps_ratio": ratio(rps, median(base.rps[concurrency])),
                "cpu_us_per_request": (
                    median(target.cpu[concurrency]) * 1e6 if target.cpu.get(concurrency) else None
                ),
            }
        out[target.name] = {"errors": target.errors, "by_concurrency": per}
    return out


def print_summary(title: str, summary: dict[str, Any], baseline: str) -> None:
    rows = []
    for name, data in summary.items():
        for concurrency, s in data["by_concurrency"].items():
            is_base = name == baseline
            rows.append(
                [f"c={concurrency}", name, s["ttfb_p50_ms"], s["ttfb_p99_ms"],
                 "-" if is_base else f"{s['added_p50_ms']:+.2f}",
                 "-" if is_base else f"{s['added_p99_ms']:+.2f}",
                 s["rps"], "-" if is_base else f"{s['rps_ratio']:.3f}",
                 "-" if s.get("cpu_us_per_request") is None else s["cpu_us_per_request"]]
            )  # fmt: skip
    rows.sort(key=lambda r: int(str(r[0])[2:]))
    print()
    print(title)
    print(
        table(
            [
                "conc",
                "path",
                "TTFB p50 ms",
                "TTFB p99 ms",
                "added p50",
                "added p99",
                "req/s",
                "x direct",
                "proxy CPU us/req",
            ],
            rows,
        )  # fmt: skip
    )


def verdicts(summary: dict[str, Any], name: str) -> dict[str, Any]:
    out = {}
    for concurrency, s in summary[name]["by_concurrency"].items():
        out[concurrency] = {
            "added_p50_ms": s["added_p50_ms"],
            "p50_met": s["added_p50_ms"] <= TARGET_P50_MS,
            "added_p99_ms": s["added_p99_ms"],
            "p99_met": s["added_p99_ms"] <= TARGET_P99_MS,
            "rps_ratio": s["rps_ratio"],
            "rps_met": s["rps_ratio"] >= TARGET_RPS,
        }
    return out


def print_verdicts(name: str, result: dict[str, Any]) -> None:
    for concurrency, v in result.items():
        print(
            f"{name} c={concurrency}: added p50 {v['added_p50_ms']:+.2f} ms (<= {TARGET_P50_MS}: "
            f"{verdict(v['p50_met'])}), added p99 {v['added_p99_ms']:+.2f} ms (<= "
            f"{TARGET_P99_MS}: {verdict(v['p99_met'])}), req/s {v['rps_ratio']:.3f}x direct "
            f"(>= {TARGET_RPS}: {verdict(v['rps_met'])})"
        )


# -- main ------------------------------------------------------------------------------------


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--tokens", type=int, default=16, help="SSE events per answer upstream")
    p.add_argument("--no-nginx", action="store_true", help="skip the nginx comparison")
    p.add_argument("--no-engine", action="store_true", help="skip the real tiny-model engine")
    p.add_argument(
        "--engine-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="one more real-engine run with this variable set (e.g. TALKTUAH_ENGINE_THREADS=2)",
    )
    p.add_argument(
        "--client",
        choices=["raw", "httpx"],
        default="raw",
        help="load generator: a lean asyncio HTTP/1.1 client (default) or httpx.AsyncClient",
    )
    add_alt_src(p)
    args = p.parse_args()
    if args.quick:
        counts = {1: 100, 16: 300, 64: 600}
        engine_counts = {1: 10}
    else:
        counts = {1: 300, 16: 1000, 64: 2000}
        engine_counts = {1: 100}
    results: dict[str, Any] = {
        "quick": args.quick, "rounds": args.rounds, "counts": counts, "client": args.client,
        "tokens": args.tokens,
    }  # fmt: skip

    with tempfile.TemporaryDirectory(prefix="bench-proxy-") as tmp:
        root = Path(tmp)
        procs: list[subprocess.Popen[bytes]] = []
        servers: list[TalkTuahProcess] = []
        try:
            upstream, up_port = start_upstream(args.tokens)
            procs.append(upstream)
            up_url = f"http://127.0.0.1:{up_port}"
            env = {"TALKTUAH_ENGINE": "external", "TALKTUAH_ENGINE_URL": up_url}
            talktuah = start_talktuah(root / "tt" / "home", env)
            servers.append(talktuah)
            targets = [
                Target("direct", f"{up_url}/v1/chat/completions"),
                Target("talktuah", f"{talktuah.url}/v1/chat/completions", pid=talktuah.proc.pid),
            ]
            for index, src in enumerate(args.alt_src):
                alt = start_talktuah(root / f"alt{index}" / "home", env | alt_src_env(src))
                servers.append(alt)
                label = f"talktuah ({alt_label(src)})"
                targets.append(Target(label, f"{alt.url}/v1/chat/completions", pid=alt.proc.pid))
            for kind, label in FLOORS.items():
                floor, floor_port = start_floor(up_url, kind)
                procs.append(floor)
                url = f"http://127.0.0.1:{floor_port}/v1/chat/completions"
                targets.append(Target(label, url, pid=floor.pid))
            if not args.no_nginx:
                nginx, nginx_port = start_nginx(root / "nginx", up_port)
                procs.append(nginx)
                targets.append(
                    Target(
                        "nginx", f"http://127.0.0.1:{nginx_port}/v1/chat/completions",
                        pid=nginx.pid, children=True,
                    )
                )  # fmt: skip
            run_async(measure(targets, MODEL, CONCURRENCY, counts, args.rounds, args.client))
        finally:
            for server in servers:
                server.stop()
            for proc in reversed(procs):
                stop_process(proc)
        fast = summarize(targets, "direct")
        results["fast_upstream"] = fast
        results["verdicts"] = {t.name: verdicts(fast, t.name) for t in targets[1:]}

        if not args.no_engine:
            for label, env in engine_configs(args.engine_env).items():
                results[label] = engine_run(
                    root / label, args.rounds, engine_counts, args.client, args.alt_src, env
                )

    print_summary(f"fast upstream ({args.tokens} tokens, medians of {args.rounds} rounds)",
                  fast, "direct")  # fmt: skip
    engine_labels = [] if args.no_engine else list(engine_configs(args.engine_env))
    for label in engine_labels:
        print_summary(f"real engine: transformers serve, tiny model ({label})", results[label],
                      "direct")  # fmt: skip
    print()
    for name, result in results["verdicts"].items():
        print_verdicts(name, result)
    for label in engine_labels:
        results[f"{label}_verdicts"] = {
            name: verdicts(results[label], name) for name in results[label] if name != "direct"
        }
        for name, result in results[f"{label}_verdicts"].items():
            print_verdicts(f"{name}, {label}", result)
    path = write_results("proxy", results)
    print(f"wrote {path}")


def engine_configs(specs: list[str]) -> dict[str, dict[str, str]]:
    """The real-engine runs: TalkTuah's defaults, then one per `--engine-env NAME=VALUE`."""
    configs: dict[str, dict[str, str]] = {"tiny_engine": {}}
    for spec in specs:
        name, _, value = spec.partition("=")
        configs[f"tiny_engine {name}={value}"] = {name: value}
    return configs


def engine_run(
    root: Path,
    rounds: int,
    counts: dict[int, int],
    client: str,
    alt_srcs: list[str],
    env: dict[str, str],
) -> dict[str, Any]:
    """TalkTuah with its real `transformers serve` engine vs the same engine process direct.

    An `--alt-src` TalkTuah runs its own engine (same model, same arguments) beside it.
    `env` goes to TalkTuah and so to the engine it starts.
    """
    from tests.support.tiny_model import install_in_cache, tiny_chat_model_files

    files = tiny_chat_model_files(seed=11)
    servers: list[TalkTuahProcess] = []
    floors: list[subprocess.Popen[bytes]] = []
    try:
        targets = []
        for index, src in enumerate([None, *alt_srcs]):
            home = root / f"engine{index}" / "home"
            install_in_cache(home / "models" / "hub", TINY, files)
            server = start_talktuah(
                home, {"DEFAULT_MODEL": TINY, **env, **alt_src_env(src)}, timeout=180
            )
            servers.append(server)
            if src is None:
                port = engine_port(home)
                targets.append(Target("direct", f"http://127.0.0.1:{port}/v1/chat/completions"))
                targets.append(
                    Target("talktuah", f"{server.url}/v1/chat/completions", pid=server.proc.pid)
                )
                for kind, label in FLOORS.items():  # the bare stack, in front of this engine
                    floor, floor_port = start_floor(f"http://127.0.0.1:{port}", kind)
                    floors.append(floor)
                    url = f"http://127.0.0.1:{floor_port}/v1/chat/completions"
                    targets.append(Target(label, url, pid=floor.pid))
            else:
                label = f"talktuah ({alt_label(src)})"
                targets.append(
                    Target(label, f"{server.url}/v1/chat/completions", pid=server.proc.pid)
                )
        run_async(measure(targets, TINY, (1,), counts, rounds, client))
    finally:
        for server in servers:
            server.stop()
        for floor in floors:
            stop_process(floor)
    return summarize(targets, "direct")


if __name__ == "__main__":
    main()
