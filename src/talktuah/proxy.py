"""The OpenAI-compatible proxy in front of the engine, through one pooled httpx client.

Clients see one clean OpenAI surface whatever the engine does: the model id they asked for
(not `org/name@main`), streams that end with `data: [DONE]`, JSON errors with a meaningful
status instead of plain-text 500s, 503 + Retry-After while a model loads, 502 when the
engine is down, 504 when it does not answer in time.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any

import httpx
from starlette.responses import JSONResponse, Response

from .config import Settings
from .engine.base import EngineState
from .engine.lifecycle import InstanceState
from .engine.pool import DEFAULT_ALIASES
from .engine.supervisor import ROUTED, EngineSupervisor
from .engine_client import engine_client
from .errors import (
    BadRequestError,
    EngineFailedError,
    EngineLoadingError,
    EngineRejectedError,
    EngineTimeoutError,
    EngineUnavailableError,
    ModelNotServedError,
    TalkTuahError,
)
from .metrics import Metrics
from .streaming import EngineStream

logger = logging.getLogger(__name__)

_REQUIRED: dict[str, tuple[str, type | tuple[type, ...]]] = {
    "/v1/chat/completions": ("messages", list),
    "/v1/completions": ("prompt", (str, list)),
    "/v1/embeddings": ("input", (str, list)),
}


#: How deep a request body may nest. OpenAI bodies are shallow (a tool's JSON schema is the
#: deepest part, a few dozen levels at most); deeper input only serves to exhaust Python's
#: recursion limit in the parser or the encoder, which would answer 500 instead of 400.
MAX_JSON_DEPTH = 100


def parse_body(raw: bytes) -> dict[str, Any]:
    """The request body as a JSON object, or a BadRequestError saying what to fix.

    Refused here rather than failing later: nesting deeper than MAX_JSON_DEPTH (the parser
    would raise RecursionError on 10^5 levels, the encoder on a few hundred), and NaN,
    Infinity or numbers too large for a float (`json.dumps` refuses them when the body is
    forwarded to the engine, which would otherwise surface as a 500).
    """
    try:
        body = json.loads(raw or b"null", parse_constant=_no_constant, parse_float=_finite)
    except RecursionError as exc:
        raise _too_deep() from exc
    except BadRequestError:
        raise
    except ValueError as exc:
        raise BadRequestError(f"The request body is not valid JSON: {exc}.") from exc
    if not isinstance(body, dict):
        raise BadRequestError("The request body must be a JSON object.")
    # Nesting needs as many brackets as levels: most bodies are ruled out by two counts in C,
    # and only the rest are walked.
    if raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH and _deeper_than(body, MAX_JSON_DEPTH):
        raise _too_deep()
    return body


def _too_deep() -> BadRequestError:
    return BadRequestError(
        f"The request body nests deeper than {MAX_JSON_DEPTH} levels; send a flatter body."
    )


def _no_constant(name: str) -> float:
    raise BadRequestError(
        f"The request body contains {name}, which is not a JSON number; send a finite number."
    )


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise BadRequestError(
            f"The number {text[:40]} in the request body is out of range; send a finite number."
        )
    return value


def _deeper_than(body: dict[str, Any], limit: int) -> bool:
    """Whether `body` nests more than `limit` lists or objects deep.

    Level by level rather than recursive (the point is not to recurse on hostile input);
    measured twice as fast as a stack of (value, depth) pairs on a 1,000-container body.
    """
    level: list[Any] = [body]
    for _ in range(limit):
        level = [
            child
            for value in level
            for child in (value.values() if type(value) is dict else value)
            if type(child) in _CONTAINERS
        ]
        if not level:
            return False
    return True


_CONTAINERS = (dict, list)


class EngineProxy:
    def __init__(
        self, settings: Settings, supervisor: EngineSupervisor, metrics: Metrics | None = None
    ) -> None:
        self.settings = settings
        self.supervisor = supervisor
        self.metrics = metrics or Metrics()
        self.client = engine_client(httpx.Timeout(settings.proxy_timeout, connect=5.0))
        self._urls: dict[str, httpx.URL] = {}

    async def close(self) -> None:
        await self.client.aclose()

    async def _engine_model(self) -> str:
        """The served model once the engine is ready; waits (bounded) while it loads."""
        supervisor = self.supervisor
        if supervisor.state == EngineState.LOADING:
            await supervisor.wait_ready(self.settings.proxy_load_wait)
        state = supervisor.state
        if state == EngineState.LOADING:
            raise EngineLoadingError(
                f"The engine is still loading {supervisor.status().get('loading_model')}; "
                "retry shortly (GET /api/model-loading-status shows progress).",
                retry_after=max(1, math.ceil(self.settings.engine_health_interval * 2)),
            )
        model = supervisor.model
        if state != EngineState.READY or model is None:
            raise EngineUnavailableError(
                f"No engine is serving ({state}): {supervisor.status()['message']} "
                "Start one with POST /api/switch-model?model_id=..."
            )
        return model

    async def models(self) -> dict[str, Any]:
        """`/v1/models`: the downloaded models, those loaded first and marked; an external
        engine's own list, ids cleaned."""
        pool = self.supervisor.pool
        if not pool.external:
            listed = pool.model_list()
            if not any(entry["loaded"] for entry in listed):
                await self._engine_model()  # nothing serves: say why, as before the pool
            return {"object": "list", "data": listed}
        ROUTED.set(await pool.route(None))
        response = await self._send("GET", "/v1/models", None)
        body = response.json() if response.status_code == 200 else {"data": []}
        for entry in body.get("data", []):
            if isinstance(entry, dict) and isinstance(entry.get("id"), str):
                entry["id"] = entry["id"].split("@")[0]
                entry.pop("status", None)
        return {"object": "list", "data": body.get("data", [])}

    async def forward(
        self,
        path: str,
        body: dict[str, Any],
        *,
        default_stream: bool = False,
        open_stream: Callable[[], Callable[[], None]] | None = None,
    ) -> Response:
        """Forward one OpenAI request body to `path` on the engine.

        `open_stream` takes a stream slot for the caller's key (raising when none is left)
        and returns its release, called when the stream ends however it ends.
        """
        stream = bool(body.get("stream", default_stream))
        try:
            response = await self._forward(path, body, stream, open_stream)
        except TalkTuahError as exc:
            self.metrics.proxy_requests.labels(path, str(stream), type(exc).__name__).inc()
            raise
        self.metrics.proxy_requests.labels(path, str(stream), str(response.status_code)).inc()
        return response

    async def _forward(
        self,
        path: str,
        body: dict[str, Any],
        stream: bool,
        open_stream: Callable[[], Callable[[], None]] | None,
    ) -> Response:
        check = _REQUIRED.get(path)
        if check is not None:
            field, kinds = check
            if not isinstance(body.get(field), kinds):
                raise BadRequestError(f"The request body needs '{field}' ({path}).")
        if path == "/v1/chat/completions":
            _check_messages(body["messages"])
        requested, engine_name = await self.route(body)
        payload = dict(body, model=engine_name, stream=stream)
        if stream:
            drop_usage = _ask_for_usage(self.supervisor.driver, path, payload)
            release = open_stream() if open_stream is not None else _nothing
            try:
                return await self._stream(path, payload, requested, release, drop_usage)
            except BaseException:
                release()
                raise
        started = time.perf_counter()
        upstream = await self._send("POST", path, payload)
        self.metrics.proxy_ttfb.labels(path).observe(time.perf_counter() - started)
        return self._finish(upstream, requested)

    async def route(self, body: dict[str, Any]) -> tuple[str, str]:
        """(the id the client asked for, the engine's name for it), for every API.

        The one place where a request's `model` meets the engines, so that chat completions,
        /v1/messages and /v1/responses route alike: the engine pool picks the instance that
        serves that id (no `model` or "default": the default model), loading it on demand
        and waiting (bounded) while it loads; `keep_alive` is the pool's, taken out of the
        body before the engine sees it. Answers name the model by the id asked for, not by
        the engine's name.
        """
        model = body.get("model")
        keep_alive = body.pop("keep_alive", None)  # ours (Ollama's), not the engine's
        instance = await self.supervisor.pool.route(model, keep_alive)
        ROUTED.set(instance)  # `_send` and the stream's end count this engine's traffic
        if instance.driver.manages_models:
            requested = instance.model_id if model in DEFAULT_ALIASES else str(model)
            if requested != instance.model_id and _same_quant(requested, instance.model_id):
                requested = instance.model_id
            return requested, instance.served_name
        served = instance.served_name  # an external engine serves what it serves
        requested = model or served
        if requested != served:
            raise ModelNotServedError(
                f"Model {requested!r} is not being served; the external engine serves "
                f"{served!r}. Ask for {served!r}, or change its model where it runs."
            )
        return str(requested), served

    async def _send(
        self, method: str, path: str, payload: dict[str, Any] | None, stream: bool = False
    ) -> httpx.Response:
        routed = ROUTED.get()
        engine = routed if routed is not None else self.supervisor
        url = engine.driver.base_url + path
        parsed = self._urls.get(url)
        if parsed is None:  # parsed once per engine address and path, not per request
            parsed = self._urls[url] = httpx.URL(url)
        request = self.client.build_request(method, parsed, json=payload)
        traffic = engine.traffic
        traffic.enter()  # a streamed response leaves when `_stream` closes it
        try:
            response = await self.client.send(request, stream=stream)
        except BaseException as exc:
            traffic.leave()
            meaning = self._unreachable(exc)
            if meaning is None:
                raise
            raise meaning from exc
        if not stream:
            traffic.leave()
        return response

    def _unreachable(self, exc: BaseException) -> TalkTuahError | None:
        """What a failed engine call means to the caller (None: not an HTTP failure)."""
        if isinstance(exc, httpx.TimeoutException):
            return EngineTimeoutError(
                f"The engine did not answer within {self.settings.proxy_timeout:.0f} s "
                "(TALKTUAH_PROXY_TIMEOUT)."
            )
        if not isinstance(exc, httpx.TransportError):
            return None
        routed = ROUTED.get()
        if (routed is not None and routed.status.state != InstanceState.READY) or (
            routed is None and self.supervisor.state == EngineState.LOADING
        ):
            return EngineLoadingError(
                "The engine is being switched to another model or unloaded; retry shortly.",
                retry_after=max(1, math.ceil(self.settings.engine_health_interval * 2)),
            )
        return EngineUnavailableError(
            f"The engine at {self.supervisor.driver.base_url} is unreachable ({exc}); "
            "GET /api/model-loading-status shows its state."
        )

    def _finish(self, response: httpx.Response, requested: str) -> Response:
        if response.status_code >= 400:
            raise engine_error(response.status_code, response.text)
        try:
            data = response.json()
        except ValueError as exc:
            raise engine_error(response.status_code, response.text) from exc
        if isinstance(data, dict) and "model" in data:
            data["model"] = requested
        if isinstance(data, dict):
            self._count_usage(data.get("usage"))
        return JSONResponse(data, status_code=response.status_code)

    def _count_usage(self, usage: object) -> None:
        if not isinstance(usage, dict):
            return
        for kind in ("prompt", "completion"):
            value = usage.get(f"{kind}_tokens")
            if isinstance(value, int) and value > 0:
                self.metrics.tokens.labels(kind).inc(value)

    async def open_stream(
        self, path: str, payload: dict[str, Any], release: Callable[[], None]
    ) -> tuple[httpx.Response, Callable[[], Awaitable[None]]]:
        """Send a streamed call to the engine: its response, and the one end of it.

        The end runs however the call ends: EngineStream calls it after the last byte or when
        the client left (closing the engine's response cancels its generation), an error path
        before answering. Every API streamed through the proxy (chat, agent_apis) opens here.
        """
        started = time.perf_counter()
        response = await self._send("POST", path, payload, stream=True)
        self.metrics.proxy_ttfb.labels(path).observe(time.perf_counter() - started)
        traffic = self.supervisor.traffic

        async def close() -> None:
            try:
                await response.aclose()
            finally:
                traffic.leave()
                release()

        return response, close

    async def _stream(
        self,
        path: str,
        payload: dict[str, Any],
        requested: str,
        release: Callable[[], None],
        drop_usage: bool = False,
    ) -> Response:
        response, close = await self.open_stream(path, payload, release)
        if response.status_code >= 400:
            try:
                text = (await response.aread()).decode(errors="replace")
            finally:
                await close()
            raise engine_error(response.status_code, text)
        return EngineStream(
            _rewrite_sse(response, requested, self._count_usage, drop_usage),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            on_close=close,
        )


def engine_error(status: int, text: str) -> EngineFailedError | EngineRejectedError:
    """What an engine's error answer (`status`, body `text`) means, whatever shape it came in.

    A 5xx (its bare `Internal Server Error` too) or an answer that is not JSON is the engine
    failing, sent on as a 502 with context; a 4xx is the engine refusing the request, its
    status passed on. JSON errors (`detail`, OpenAI's or Anthropic's `error` object) are
    reduced to their message. Raised, like every other error, and answered in the shape of
    the API asked (api/errors.py).
    """
    message = text.strip()
    try:
        parsed = json.loads(message)
        detail = parsed.get("detail") or parsed.get("error") or parsed
        if isinstance(detail, dict):
            detail = detail.get("message", json.dumps(detail))
        message = str(detail)
    except (ValueError, AttributeError):
        pass
    if status < 400:
        failed = f"The engine's answer is not JSON ({status}: {message[:300]})."
        return EngineFailedError(failed, engine_status=status)
    if status >= 500:
        failed = f"The engine failed on this request ({status}: {message[:300]})."
        return EngineFailedError(failed, engine_status=status)
    if status == 404:
        return EngineRejectedError(
            f"The engine does not offer this: {message}", engine_status=status
        )
    return EngineRejectedError(f"The engine rejected the request: {message}", engine_status=status)


def _same_quant(requested: object, served: str) -> bool:
    """`org/repo:q8_0` asked while `org/repo:Q8_0` serves: quant tags are case-insensitive."""
    if not isinstance(requested, str) or ":" not in requested:
        return False
    repo, _, tag = requested.partition(":")
    return f"{repo}:{tag.upper()}" == served


def _ask_for_usage(driver: object, path: str, payload: dict[str, Any]) -> bool:
    """Ask an engine that reports stream usage only on request for it (the token metrics);
    True when the client did not ask, so the extra usage-only chunk must not reach it."""
    if not getattr(driver, "stream_usage_on_request", False) or path not in _USAGE_PATHS:
        return False
    options = payload.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage") is True:
        return False
    payload["stream_options"] = {**(options if isinstance(options, dict) else {}),
                                 "include_usage": True}  # fmt: skip
    return True


_USAGE_PATHS = frozenset({"/v1/chat/completions", "/v1/completions"})


def _check_messages(messages: list[Any]) -> None:
    """Catch what `transformers serve` answers with a bare 500 before it reaches the engine
    (an empty list included: found by tests/api/test_openapi_fuzz.py)."""
    if not messages:
        raise BadRequestError("'messages' is empty; send at least one message.")
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise BadRequestError(f"messages[{index}] needs a string 'role'.")
        content = message.get("content")
        if content is not None and not isinstance(content, (str, list)):
            raise BadRequestError(
                f"messages[{index}].content must be a string or a list of content parts."
            )


def _nothing() -> None:
    return None


_MODEL_FIELD = re.compile(rb'"model"\s*:\s*"(?:[^"\\]|\\.)*"')


async def _rewrite_sse(
    response: httpx.Response,
    requested: str,
    count_usage: Callable[[object], None],
    drop_usage: bool = False,
) -> AsyncGenerator[bytes, None]:
    """Pass SSE events through as they arrive, with our model id, ending in `[DONE]`.

    Bytes in, bytes out: an event is re-encoded only when it carries `usage` (counted) or
    does not look like a plain chunk; otherwise only its `"model"` value is swapped in place.
    Events that reached TalkTuah while the previous write was under way arrive here as one
    chunk (the engine client's aiohttp reader buffers them) and go out in one write; its
    buffer is bounded, so a slow client slows the engine down rather than filling memory.

    Only a transformation: the engine's response is closed by `EngineProxy._stream`'s
    `close`, which EngineStream (streaming.py) always calls, also when the client left.
    """
    model_field = b'"model":' + json.dumps(requested).encode()
    done = False
    pending = b""
    async for raw in response.aiter_bytes():
        *lines, pending = (pending + raw).split(b"\n")
        out = []
        for line in lines:
            piece = _rewrite_line(line, model_field, requested, count_usage, drop_usage)
            done = done or piece == _DONE
            out.append(piece)
        if out:
            yield b"".join(out)
    if pending.strip():
        piece = _rewrite_line(pending, model_field, requested, count_usage, drop_usage)
        done = done or piece == _DONE
        yield piece
    if not done:
        yield _DONE


_DONE = b"data: [DONE]\n\n"


def _rewrite_line(
    line: bytes,
    model_field: bytes,
    requested: str,
    count_usage: Callable[[object], None],
    drop_usage: bool = False,
) -> bytes:
    line = line.rstrip(b"\r")
    if not line.startswith(b"data:"):
        return line + b"\n" if line and not line.startswith(b":") else b""
    data = line[5:].strip()
    if data == b"[DONE]":
        return _DONE
    if data.startswith(b"{") and b'"usage"' not in data and data.count(b'"model"') <= 1:
        # The common chunk: swap the model id without parsing the JSON.
        return b"data: " + _MODEL_FIELD.sub(lambda _: model_field, data, count=1) + b"\n\n"
    try:
        event = json.loads(data)
    except ValueError:
        return b"data: " + data + b"\n\n"
    if isinstance(event, dict):
        count_usage(event.get("usage"))
        if drop_usage and event.get("choices") == [] and "usage" in event:
            return b""  # the usage-only chunk we asked for, which the client did not
        if "model" in event:
            event["model"] = requested
    return f"data: {json.dumps(event, separators=(',', ':'))}\n\n".encode()
