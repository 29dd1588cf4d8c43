"""Forwarding an agent API request to the engine: one path for every API in this package.

It does what `EngineProxy.forward` does for chat completions, and through the same parts:
`EngineProxy.route` (the `model` field), `_send` (the pooled client, the traffic count that
lets a switch find the engine idle, 502/503/504 when the engine is away), the stream slot
of the caller's key, EngineStream (unbuffered; closing the engine's response when the
client leaves), the proxy metrics. What it does not do is translate: bodies and events go
through as the engine wrote them.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncGenerator, Callable
from typing import Any

import httpx
from starlette.responses import Response

from ..errors import TalkTuahError
from ..metrics import Metrics
from ..proxy import EngineProxy, engine_error
from ..streaming import EngineStream
from .base import AgentApi, Usage


async def forward(
    proxy: EngineProxy,
    api: AgentApi,
    body: dict[str, Any],
    *,
    open_stream: Callable[[], Callable[[], None]] | None = None,
) -> Response:
    """Forward one `api` request body to the engine (errors are raised, and answered in
    `api`'s shape by api/errors.py).

    `open_stream` takes a stream slot for the caller's key (raising when none is left) and
    returns its release, called when the stream ends however it ends.
    """
    stream = api.streams and body.get("stream") is True
    try:
        response = await _forward(proxy, api, body, stream, open_stream)
    except TalkTuahError as exc:
        proxy.metrics.proxy_requests.labels(api.path, str(stream), type(exc).__name__).inc()
        raise
    proxy.metrics.proxy_requests.labels(api.path, str(stream), str(response.status_code)).inc()
    return response


async def _forward(
    proxy: EngineProxy,
    api: AgentApi,
    body: dict[str, Any],
    stream: bool,
    open_stream: Callable[[], Callable[[], None]] | None,
) -> Response:
    api.check(body)
    requested, engine_name = await proxy.route(body)
    driver = proxy.supervisor.driver
    if api.capability not in driver.apis:
        raise api.unsupported(driver.name, requested)
    payload = dict(body, model=engine_name)
    if api.streams:
        payload["stream"] = stream  # always said: transformers serve streams when it is not
    api.prepare(payload)
    if stream:
        release = open_stream() if open_stream is not None else _nothing
        try:
            return await _stream(proxy, api, payload, requested, release)
        except BaseException:
            release()
            raise
    started = time.perf_counter()
    upstream = await proxy._send("POST", api.path, payload)
    proxy.metrics.proxy_ttfb.labels(api.path).observe(time.perf_counter() - started)
    return _finish(proxy.metrics, api, upstream, requested)


def _finish(metrics: Metrics, api: AgentApi, upstream: httpx.Response, requested: str) -> Response:
    """A whole answer: the engine's bytes, unless its `model` must name the id asked for."""
    if upstream.status_code >= 400:
        raise engine_error(upstream.status_code, upstream.text)
    try:
        data = upstream.json()
    except ValueError as exc:
        raise engine_error(upstream.status_code, upstream.text) from exc
    if isinstance(data, dict):
        if api.counts_tokens:
            TokenTally(metrics).observe(api.usage(data))
        if "model" in data and data["model"] != requested:
            data["model"] = requested
            return Response(
                json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode(),
                status_code=upstream.status_code,
                media_type="application/json",
            )
    return Response(upstream.content, upstream.status_code, media_type="application/json")


async def _stream(
    proxy: EngineProxy,
    api: AgentApi,
    payload: dict[str, Any],
    requested: str,
    release: Callable[[], None],
) -> Response:
    response, close = await proxy.open_stream(api.path, payload, release)
    if response.status_code >= 400:
        try:
            text = (await response.aread()).decode(errors="replace")
        finally:
            await close()
        raise engine_error(response.status_code, text)
    media_type = response.headers.get("content-type", "text/event-stream")
    tally = TokenTally(proxy.metrics) if api.counts_tokens else None
    return EngineStream(
        pass_events(response, api, requested, tally),
        media_type=media_type,
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        on_close=close,
    )


class TokenTally:
    """Counts one answer's tokens into the metrics from the totals its events report.

    Anthropic reports running totals (input tokens in `message_start`, output tokens again
    in every `message_delta`, sometimes the input again): each total is counted once, by
    what it adds to the last one seen.
    """

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self.prompt = 0
        self.completion = 0

    def observe(self, usage: Usage) -> None:
        prompt, completion = usage
        if prompt is not None and prompt > self.prompt:
            self.metrics.tokens.labels("prompt").inc(prompt - self.prompt)
            self.prompt = prompt
        if completion is not None and completion > self.completion:
            self.metrics.tokens.labels("completion").inc(completion - self.completion)
            self.completion = completion


#: A JSON `"model": "<string>"` member. In JSON text a quote inside a string is escaped, so
#: this never matches inside a string value (a prompt or a tool's arguments).
_MODEL_FIELD = re.compile(rb'("model"\s*:\s*)"(?:[^"\\]|\\.)*"')


async def pass_events(
    response: httpx.Response, api: AgentApi, requested: str, tally: TokenTally | None
) -> AsyncGenerator[bytes, None]:
    """The engine's stream as it arrives, byte for byte but for the model's name.

    Whole lines are passed on as soon as their newline arrives (an event's `event:` and
    `data:` lines, the blank line between events, comments), so the framing is the
    engine's. Only `data:` lines that mention `"model"` or `"usage"` are looked at: usage
    is counted, and a `model` value other than the id asked for is replaced in place
    (re-encoded only when the event names a model more than once, e.g. a response echoing
    metadata, where the API's own field is set). Only a transformation: EngineStream closes
    the engine's response (see `_stream`'s close).
    """
    model_value = json.dumps(requested).encode()
    pending = b""
    async for raw in response.aiter_bytes():
        block = pending + raw
        end = block.rfind(b"\n") + 1
        pending = block[end:]
        if end:
            yield _rewrite_block(block[:end], api, requested, model_value, tally)
    if pending:
        yield _rewrite_block(pending, api, requested, model_value, tally)


def _rewrite_block(
    block: bytes, api: AgentApi, requested: str, model_value: bytes, tally: TokenTally | None
) -> bytes:
    if b'"model"' not in block and (tally is None or b'"usage"' not in block):
        return block  # most events: text deltas
    return b"\n".join(
        _rewrite_line(line, api, requested, model_value, tally) for line in block.split(b"\n")
    )


def _rewrite_line(
    line: bytes, api: AgentApi, requested: str, model_value: bytes, tally: TokenTally | None
) -> bytes:
    if not line.startswith(b"data:"):
        return line
    has_usage = tally is not None and b'"usage"' in line
    has_model = b'"model"' in line
    if not (has_usage or has_model):
        return line
    event: Any = None
    if has_usage:
        event = _json(line)
        if isinstance(event, dict) and tally is not None:
            tally.observe(api.event_usage(event))
    if not has_model:
        return line
    models = _MODEL_FIELD.findall(line)
    if len(models) == 1:
        return _MODEL_FIELD.sub(lambda m: m.group(1) + model_value, line, count=1)
    if event is None:
        event = _json(line)
    holder = api.model_holder(event) if isinstance(event, dict) else None
    if holder is None or holder.get("model") in (None, requested):
        return line
    holder["model"] = requested
    end = b"\r" if line.endswith(b"\r") else b""
    encoded = json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode()
    return b"data: " + encoded + end


def _json(line: bytes) -> Any:
    try:
        return json.loads(line[5:])
    except ValueError:
        return None


def _nothing() -> None:
    return None
