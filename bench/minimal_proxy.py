"""The floor of the stack TalkTuah is built on: uvicorn + one pooled httpx.AsyncClient.

A bare ASGI app that forwards `POST /v1/chat/completions` to the upstream and streams the
answer back untouched: no FastAPI, no auth, no middleware, no rewriting, no metrics, no log.
bench/proxy.py runs it beside TalkTuah so the table shows how much of TalkTuah's added time
is the server + client stack itself and how much is TalkTuah's own work.

`--client engine` uses TalkTuah's engine client (src/talktuah/engine_client.py: httpx on
aiohttp's transport), the stack TalkTuah runs on; `--client httpx` a plain httpx.AsyncClient
(httpx's own transport, h11), what it ran on before.

    python bench/minimal_proxy.py --port 8001 --upstream http://127.0.0.1:8000 [--client httpx]
"""

from __future__ import annotations

import argparse
from typing import Any

import httpx
import uvicorn

from talktuah.engine_client import engine_client


def build_app(upstream: str, kind: str) -> Any:
    timeout = httpx.Timeout(600, connect=5.0)
    if kind == "engine":
        client = engine_client(timeout)
    else:
        client = httpx.AsyncClient(
            timeout=timeout,
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
        )

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await client.aclose()
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        request = client.build_request(
            scope["method"], upstream + scope["path"], content=body,
            headers={"content-type": "application/json"},
        )  # fmt: skip
        response = await client.send(request, stream=True)
        try:
            await send({
                "type": "http.response.start", "status": response.status_code,
                "headers": [(b"content-type", b"text/event-stream")],
            })  # fmt: skip
            async for chunk in response.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            await response.aclose()

    return app


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--upstream", required=True)
    p.add_argument("--client", choices=["engine", "httpx"], default="engine")
    args = p.parse_args()
    uvicorn.run(
        build_app(args.upstream, args.client), host="127.0.0.1", port=args.port,
        log_level="warning", access_log=False, lifespan="on",
    )  # fmt: skip


if __name__ == "__main__":
    main()
