"""What an agent API is to the proxy: its path, its required fields, usage, errors."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.responses import JSONResponse

from ..errors import ApiNotSupportedError, BadRequestError
from ..logs import request_id

#: (prompt tokens, completion tokens) as an answer or event reports them; None: not there.
Usage = tuple[int | None, int | None]


class AgentApi:
    """One agent API endpoint; subclasses say where its answers keep usage and the model."""

    #: The `EngineDriver.apis` entry an engine needs for this endpoint.
    capability: str = ""
    #: What people call it, for messages.
    title: str = ""
    path: str = ""
    #: The body field no engine can answer without, and its JSON types.
    required: tuple[str, tuple[type, ...]] = ("", ())
    #: False for an endpoint that never streams (count_tokens): `stream` is not sent.
    streams: bool = True
    #: False for an endpoint that generates nothing (count_tokens): no tokens are counted.
    counts_tokens: bool = True

    def check(self, body: dict[str, Any]) -> None:
        """Refuse a body no engine could answer, before it waits for one."""
        field, kinds = self.required
        if not isinstance(body.get(field), kinds):
            names = " or ".join(_JSON_NAMES[kind] for kind in kinds)
            raise BadRequestError(f"The request body needs '{field}' ({names}) for {self.path}.")
        if self.streams and not isinstance(body.get("stream", False), bool):
            raise BadRequestError("'stream' must be true or false.")

    def prepare(self, payload: dict[str, Any]) -> None:
        """Adjust the body forwarded to the engine (already a copy)."""

    def usage(self, body: Mapping[str, Any]) -> Usage:
        """Tokens reported by a whole (not streamed) answer."""
        return None, None

    def event_usage(self, event: Mapping[str, Any]) -> Usage:
        """Tokens reported so far by one stream event (totals, not increments)."""
        return None, None

    def model_holder(self, event: dict[str, Any]) -> dict[str, Any] | None:
        """The object in a stream event whose `model` names the model answering."""
        return event

    def error_object(self, status: int, message: str, kind: str) -> dict[str, Any]:
        """This API's own error fields, which its SDKs read."""
        raise NotImplementedError

    def error_response(
        self,
        status: int,
        message: str,
        kind: str,
        headers: Mapping[str, str] | None = None,
        *,
        code: str,
        data: Mapping[str, Any] | None = None,
    ) -> JSONResponse:
        """An error in this API's shape, with TalkTuah's `detail`, `code`, data and request id
        beside it (as on every other route: people read `detail`, n8n flows branch on
        `code`). Built by api/errors.py, the one place errors become replies."""
        body: dict[str, Any] = {
            "detail": message,
            "code": code,
            **(data or {}),
            "request_id": request_id.get(),
        }
        body.update(self.error_object(status, message, kind))
        return JSONResponse(body, status_code=status, headers=headers)

    def unsupported(self, engine: str, model: str) -> ApiNotSupportedError:
        """The error for an engine without this API, naming the engines that have it."""
        engines = engines_with(self.capability)
        return ApiNotSupportedError(
            f"The {engine} engine serving {model} does not implement {self.title} "
            f"({self.path}); {', '.join(engines)} do. Serve a GGUF model (TALKTUAH_ENGINE=auto, "
            "the default, runs it on llamacpp) or set TALKTUAH_ENGINE to one of them; "
            "/v1/chat/completions works on every engine.",
            api=self.path,
            engine=engine,
            engines=engines,
        )


def engines_with(capability: str) -> list[str]:
    """The engines (TALKTUAH_ENGINE values) whose driver declares `capability`, in the
    order docs/engines.md lists them. Imported here, on the error path only."""
    from ..engine.docker import DockerDriver
    from ..engine.external import ExternalDriver
    from ..engine.llamacpp import LlamaCppDriver
    from ..engine.transformers import TransformersDriver
    from ..engine.vllm import VllmDriver

    drivers = (TransformersDriver, LlamaCppDriver, VllmDriver, DockerDriver, ExternalDriver)
    return [driver.name for driver in drivers if capability in driver.apis]


def int_or_none(value: object) -> int | None:
    """A token count from untrusted JSON: a non-negative int (not a bool), else None."""
    return value if type(value) is int and value >= 0 else None


_JSON_NAMES: dict[type, str] = {list: "an array", str: "a string", dict: "an object"}
