"""The CLI's view of a running server: base URL, key, and errors turned into messages."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx

from ..config import Settings


class ServerError(Exception):
    """The server answered with an error; the message is its `detail`."""


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
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ServerError(
                f"Cannot reach TalkTuah at {self.base_url} ({exc}). Start it with "
                "`talktuah serve`, or set TALKTUAH_URL to where it runs."
            ) from exc
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text
            raise ServerError(f"{response.status_code}: {detail}")
        return response

    def events(self, path: str) -> Iterator[dict[str, Any]]:
        """The `data:` payloads of a server-sent event stream, until the server closes it."""
        with self.http.stream("GET", path, timeout=None) as response:
            if response.status_code >= 400:
                response.read()
                raise ServerError(f"{response.status_code}: {response.text}")
            for line in response.iter_lines():
                if line.startswith("data:"):
                    yield json.loads(line[5:])

    def close(self) -> None:
        self.http.close()
