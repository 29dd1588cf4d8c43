"""Logging: text or one JSON object per line, a request id on every record, no secrets.

The request id lives in a context variable set by the request middleware, so every log line
written while serving a request — ours, uvicorn's, huggingface_hub's — carries it.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from contextvars import ContextVar
from datetime import UTC, datetime

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)

_KEY_PATTERN = re.compile(r"(tt_[A-Za-z0-9_\-]{8})[A-Za-z0-9_\-]+|(Bearer\s+)\S+")


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


class RedactSecrets(logging.Filter):
    """Replace known secrets and anything shaped like a key before a record is written."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = _KEY_PATTERN.sub(lambda m: (m.group(1) or m.group(2)) + "[redacted]", message)
        for secret in self.secrets:
            cleaned = cleaned.replace(secret, "[redacted]")
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = getattr(record, "request_id", None)
        if rid:
            entry["request_id"] = rid
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def escape_control(text: str) -> str:
    """`text` with every control character (C0, DEL, C1) written as a visible escape.

    Request paths, model ids and hub data are client-controlled: a raw newline would forge
    a log line and a raw ESC would drive the terminal of whoever tails the log.
    """
    return _CONTROL.sub(lambda m: _NAMED.get(m.group(), f"\\x{ord(m.group()):02x}"), text)


class TextFormatter(logging.Formatter):
    """One line per record; a traceback follows it indented, so no line of it (nor of a
    message inside it) can pass for a record of its own. The JSON format needs none of this:
    json.dumps escapes control characters."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s%(rid)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        rid = getattr(record, "request_id", None)
        record.rid = f" [{rid}]" if rid else ""
        record.message = escape_control(record.getMessage())
        record.asctime = self.formatTime(record, self.datefmt)
        line = self.formatMessage(record)
        extra: list[str] = []
        if record.exc_info:
            extra.append(self.formatException(record.exc_info))
        elif record.exc_text:
            extra.append(record.exc_text)
        if record.stack_info:
            extra.append(self.formatStack(record.stack_info))
        for block in extra:
            for part in block.splitlines():
                line += "\n    " + escape_control(part)
        return line


_redactor = RedactSecrets([])


def remember_secret(value: str) -> None:
    """A secret created at run time (a rotated admin key) is redacted from then on."""
    _redactor.secrets.append(value)


def configure_logging(fmt: str, level: str, secrets: list[str]) -> None:
    """Route every logger (uvicorn's included) through one handler on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(RequestIdFilter())
    _redactor.secrets[:] = [s for s in secrets if s]
    handler.addFilter(_redactor)
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers = []
        logger.propagate = True
    # httpx writes a line per request at INFO: for the proxy that is a second access line
    # per chat, written before the first byte reaches the client; huggingface_hub's client
    # (httpx2) one per file request. Their warnings still show.
    for name in ("httpx", "httpcore", "httpx2", "httpcore2"):
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
