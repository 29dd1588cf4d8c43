"""The CLI's view of a running server: base URL, key, and what went wrong, as data.

Failures become three exceptions that say what happened, not how to phrase it: the server
could not be reached, the connection to it was lost mid-answer, or it answered with an
error. `cli/errors.py` turns them into the messages a person reads.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from ..config import Settings


class ServerUnreachableError(Exception):
    """Nothing answers at the server URL: not started, stopped, or another address."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"cannot reach {url}: {reason}")
        self.url = url
        self.reason = reason


class ServerLostError(Exception):
    """The server went away in the middle of an answer (stopped, restarted, killed)."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"lost {url}: {reason}")
        self.url = url
        self.reason = reason


class ServerError(Exception):
    """The server answered with an error: its status, the route called and its `detail`."""

    def __init__(self, status: int, method: str, path: str, detail: str) -> None:
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.method = method
        self.path = path
        self.detail = detail

    @classmethod
    def from_response(cls, response: httpx.Response) -> ServerError:
        response.read()
        try:
            body = response.json()
            detail = str(body.get("detail", response.text)) if isinstance(body, dict) else ""
        except ValueError:
            detail = response.text
        request = response.request
        return cls(response.status_code, request.method, request.url.path, detail.strip())


def api_key_for(settings: Settings) -> str | None:
    """PROXY_API_KEY, else the key `talktuah serve` generated into TALKTUAH_HOME."""
    if settings.proxy_api_key:
        return settings.proxy_api_key
    try:
        return settings.api_key_path.read_text().strip() or None
    except OSError:
        return None


class TalkTuahClient:
    def __init__(self, settings: Settings, timeout: float = 60) -> None:
        key = api_key_for(settings)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.base_url = settings.server_url
        self.http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        with self._transport():
            response = self.http.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise ServerError.from_response(response)
        return response

    @contextmanager
    def stream(self, method: str, path: str, **kwargs: Any) -> Iterator[Iterator[str]]:
        """The lines of a streamed answer; a drop mid-stream raises ServerLostError."""
        with self._transport(), self.http.stream(method, path, **kwargs) as response:
            if response.status_code >= 400:
                raise ServerError.from_response(response)
            yield response.iter_lines()

    def events(self, path: str) -> Iterator[dict[str, Any]]:
        """The `data:` payloads of a server-sent event stream, until the server closes it."""
        with self.stream("GET", path, timeout=httpx.Timeout(60, read=None)) as lines:
            for line in lines:
                if line.startswith("data:"):
                    yield json.loads(line[5:])

    @contextmanager
    def _transport(self) -> Iterator[None]:
        """httpx's transport errors, told apart by whether a connection was ever made."""
        try:
            yield
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise ServerUnreachableError(self.base_url, _reason(exc)) from exc
        except httpx.TransportError as exc:
            raise ServerLostError(self.base_url, _reason(exc)) from exc

    def close(self) -> None:
        self.http.close()


def _reason(exc: Exception) -> str:
    """httpx's message without the errno prefix noise, or the exception's name."""
    text = str(exc).strip()
    if text.startswith("[Errno") and "] " in text:
        text = text.split("] ", 1)[1]
    return text or type(exc).__name__
