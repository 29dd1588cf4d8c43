#!/usr/bin/env python3
"""A stand-in for `transformers serve` that misbehaves on demand.

The real engine runs in tests/e2e. This one exists for what the real engine cannot be made
to do on cue: load slowly, refuse to start, answer too late, or stream forever. It speaks
the same surface as measured of `transformers serve`: `serve <model> --port P`, `/health`,
`/v1/models`, pinned-model 400s, plain-text 500s for bad bodies, SSE without `[DONE]`, and
answers naming the model `<id>@main`.

Behaviour comes from the environment: FAKE_ENGINE_START_DELAY (s before it listens),
FAKE_ENGINE_LOAD_DELAY (s it listens, answering 503 and listing no model, before it serves),
FAKE_ENGINE_FAIL (exit at start with this message), FAKE_ENGINE_FAIL_LOG (exit at start after
printing this file: a real engine's traceback), FAKE_ENGINE_FAIL_ONLY (a model id: the two
failures apply to it alone), FAKE_ENGINE_REPLY_DELAY (s before answering a chat),
FAKE_ENGINE_EVENTS (a file to which it appends what happened).

It also answers the agent APIs as llama.cpp's server and vLLM do (`/v1/messages`,
`/v1/messages/count_tokens`, `/v1/responses`, streamed and not), with fixed bytes the tests
compare TalkTuah's answers with: `agent_stream(path, model, count)` is what it streams.
Under the transformers driver TalkTuah never sends them (transformers serve has no
/v1/messages); tests run it as `vllm serve` (TALKTUAH_ENGINE=vllm) to reach them.

SIGTERM is graceful, as uvicorn's: stop accepting, let the answers in flight finish, exit.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def record(event: str) -> None:
    path = os.environ.get("FAKE_ENGINE_EVENTS")
    if path:
        with open(path, "a") as handle:
            handle.write(event + "\n")


def _sse(kind: str, data: dict[str, object]) -> bytes:
    """One event as llama.cpp's server writes it: its `event:` line, then compact JSON."""
    return f"event: {kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def _message_events(model: str, count: int) -> list[bytes]:
    usage = {"input_tokens": 1, "cache_read_input_tokens": 2, "output_tokens": 0}
    message = {
        "id": "msg_fake", "type": "message", "role": "assistant", "content": [],
        "model": model, "stop_reason": None, "usage": usage,
    }  # fmt: skip
    block = {"type": "content_block_start", "index": 0,
             "content_block": {"type": "text", "text": ""}}  # fmt: skip
    events = [
        _sse("message_start", {"type": "message_start", "message": message}),
        _sse("content_block_start", block),
        _sse("ping", {"type": "ping"}),
        b": a comment the engine sent\n\n",
    ]
    for i in range(count):
        delta = {"type": "content_block_delta", "index": 0,
                 "delta": {"type": "text_delta", "text": f"t{i} "}}  # fmt: skip
        events.append(_sse("content_block_delta", delta))
    end = {"type": "message_delta", "usage": {"output_tokens": count},
           "delta": {"stop_reason": "max_tokens", "stop_sequence": None}}  # fmt: skip
    return [
        *events,
        _sse("content_block_stop", {"type": "content_block_stop", "index": 0}),
        _sse("message_delta", end),
        _sse("message_stop", {"type": "message_stop"}),
    ]


def _response(model: str, status: str, text: str = "", count: int = 0) -> dict[str, object]:
    """A Responses `response` object; its metadata names a "model" too, as a client's may."""
    response: dict[str, object] = {
        "id": "resp_fake", "object": "response", "model": model, "status": status,
        "output": [], "metadata": {"model": "not the model: metadata"},
    }  # fmt: skip
    if status == "completed":
        content = [{"type": "output_text", "text": text}]
        response["output"] = [{"id": "msg_fake", "type": "message", "role": "assistant",
                               "content": content}]  # fmt: skip
        response["usage"] = {"input_tokens": 3, "output_tokens": count,
                             "total_tokens": 3 + count}  # fmt: skip
    return response


def _response_events(model: str, count: int) -> list[bytes]:
    item = {"id": "msg_fake", "type": "message", "content": []}
    created = {"type": "response.created", "response": _response(model, "in_progress")}
    events = [
        _sse("response.created", created),
        _sse("response.output_item.added", {"type": "response.output_item.added", "item": item}),
    ]
    for i in range(count):
        delta = {"type": "response.output_text.delta", "item_id": "msg_fake", "delta": f"t{i} "}
        events.append(_sse("response.output_text.delta", delta))
    text = "".join(f"t{i} " for i in range(count))
    done = {"type": "response.completed", "response": _response(model, "completed", text, count)}
    return [*events, _sse("response.completed", done)]


def agent_stream(path: str, model: str, count: int) -> list[bytes]:
    """The events of a streamed agent answer, one bytes object per event, as written.

    Messages: named events from `message_start` (input tokens, cached ones apart, as
    llama.cpp reports them) to `message_stop`, with a `ping` and an SSE comment between and
    the output tokens in `message_delta`. Responses: typed events ending `response.completed`
    with the usage.
    """
    if path == "/v1/messages":
        return _message_events(model, count)
    return _response_events(model, count)


def agent_answer(path: str, model: str, count: int) -> dict[str, object]:
    """The whole (not streamed) answer of an agent API."""
    if path == "/v1/messages/count_tokens":
        return {"input_tokens": 7}
    if path == "/v1/messages":
        usage = {"input_tokens": 1, "cache_read_input_tokens": 2, "output_tokens": count}
        return {
            "id": "msg_fake", "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "text", "text": "fake answer"}], "stop_reason": "max_tokens",
            "usage": usage,
        }  # fmt: skip
    return _response(model, "completed", "fake answer", count)


def agent_tokens(body: dict[str, object], default: int) -> int:
    """How many tokens an agent request asks for (`max_tokens`, `max_output_tokens`)."""
    value = body.get("max_tokens") or body.get("max_output_tokens")
    return value if isinstance(value, int) else default


AGENT_PATHS = ("/v1/messages", "/v1/messages/count_tokens", "/v1/responses")


def main() -> None:
    args = sys.argv[1:]
    assert args[0] == "serve", args
    model = args[1]
    port = int(args[args.index("--port") + 1])
    print(f"fake engine: loading {model}", flush=True)
    fails = os.environ.get("FAKE_ENGINE_FAIL_ONLY", model) == model
    if fails and os.environ.get("FAKE_ENGINE_FAIL_LOG"):
        with open(os.environ["FAKE_ENGINE_FAIL_LOG"]) as log:
            print(log.read(), end="", flush=True)
        sys.exit(1)
    if fails and os.environ.get("FAKE_ENGINE_FAIL"):
        print(f"ValueError: {os.environ['FAKE_ENGINE_FAIL']}", flush=True)
        sys.exit(1)
    time.sleep(float(os.environ.get("FAKE_ENGINE_START_DELAY", "0")))
    reply_delay = float(os.environ.get("FAKE_ENGINE_REPLY_DELAY", "0"))
    loaded_at = time.monotonic() + float(os.environ.get("FAKE_ENGINE_LOAD_DELAY", "0"))

    connections: set[socket.socket] = set()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            connections.add(self.connection)

        def finish(self) -> None:
            connections.discard(self.connection)
            super().finish()

        def log_message(self, *args: object) -> None:
            return None

        def _json(self, status: int, body: object) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            loaded = time.monotonic() >= loaded_at
            if self.path == "/health":
                self._json(200 if loaded else 503, {"status": "ok" if loaded else "loading"})
            elif self.path == "/v1/models":
                data = [{"id": model, "object": "model"}] if loaded else []
                self._json(200, {"object": "list", "data": data})
            else:
                self._json(404, {"detail": "Not Found"})

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if self.path in AGENT_PATHS:
                self._agent(body)
                return
            if self.path != "/v1/chat/completions":  # like transformers serve: no embeddings
                self._json(404, {"detail": "Not Found"})
                return
            if body.get("model") != model:
                self._json(400, {"detail": f"Server is pinned to '{model}'"})
                return
            if not body["messages"][0].get("role"):  # an engine bug, as far as clients know
                data = b"Internal Server Error"
                self.send_response(500)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return
            time.sleep(reply_delay)
            name = f"{model}@main"
            if not body.get("stream"):
                message = {"role": "assistant", "content": "fake answer"}
                usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
                self._json(200, {"object": "chat.completion", "model": name, "usage": usage,
                                 "choices": [{"index": 0, "message": message}]})  # fmt: skip
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            count = int(body.get("max_tokens") or 5)
            try:
                for i in range(count):
                    chunk = {"object": "chat.completion.chunk", "model": name,
                             "choices": [{"index": 0, "delta": {"content": f"t{i} "}}]}  # fmt: skip
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                    self.wfile.flush()
                    time.sleep(0.05)
                usage = {"prompt_tokens": 3, "completion_tokens": count}
                end = {"index": 0, "delta": {}, "finish_reason": "length"}
                final = {"object": "chat.completion.chunk", "model": name, "usage": usage,
                         "choices": [end]}  # fmt: skip
                self.wfile.write(f"data: {json.dumps(final)}\n\n".encode())
                self.wfile.flush()
                record("stream finished")
            except (BrokenPipeError, ConnectionResetError):
                record("client went away")
            self.close_connection = True

        def _agent(self, body: dict[str, object]) -> None:
            record(f"{self.path} {json.dumps(body, sort_keys=True)}")
            if body.get("model") != model:
                error = {"message": f"Server is pinned to '{model}'", "type": "invalid_request"}
                self._json(400, {"error": error})
                return
            time.sleep(reply_delay)
            name = f"{model}@main"
            if not body.get("stream"):
                self._json(200, agent_answer(self.path, name, agent_tokens(body, 2)))
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            try:
                for event in agent_stream(self.path, name, agent_tokens(body, 5)):
                    self.wfile.write(event)
                    self.wfile.flush()
                    time.sleep(0.05)
                record("stream finished")
            except (BrokenPipeError, ConnectionResetError):
                record("client went away")
            self.close_connection = True

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = False  # server_close() waits for the answers in flight

    def graceful(signum: int, frame: object) -> None:
        record("sigterm")
        for connection in list(connections):  # idle keep-alive ones end; answers go on
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RD)
        threading.Thread(target=server.shutdown).start()  # shutdown() waits for the loop

    signal.signal(signal.SIGTERM, graceful)
    record("listening")
    server.serve_forever(poll_interval=0.02)  # shutdown() waits up to one poll (0.5 s by default)
    server.server_close()
    record("exited gracefully")


if __name__ == "__main__":
    main()
