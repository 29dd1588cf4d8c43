"""A fake Docker daemon: just enough of the Docker Engine HTTP API for the docker SDK.

These machines have the `docker` CLI but no Docker daemon, so the docker driver's tests
point the real docker SDK (`docker.DockerClient(base_url="tcp://127.0.0.1:PORT")`) at this
server. Only the network edge is fake: the SDK still builds every request (create body,
port bindings, device requests, filters) and parses every answer (errors included), so the
tests see what a real daemon would have been sent.

Endpoints (paths after the `/v1.xx` prefix the SDK adds):
`GET /version`, `POST /containers/create`, `POST /containers/{id}/start`,
`GET /containers/{id}/json`, `GET /containers/{id}/logs` (multiplexed stream frames),
`POST /containers/{id}/stop`, `DELETE /containers/{id}`, `GET /containers/json` (with
`all` and `label`/`name` filters), `POST /images/create` (pull), `GET /images/{name}/json`.
Containers do not run anything: "start" sets their state and writes a few log lines.
"""

from __future__ import annotations

import json
import re
import secrets
import struct
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import docker  # type: ignore[import-untyped]

API_VERSION = "1.45"


@dataclass
class FakeContainer:
    name: str
    image: str
    labels: dict[str, str]
    body: dict[str, Any] = field(default_factory=dict)  # the create request, as sent
    status: str = "created"
    logs: list[str] = field(default_factory=list)
    id: str = field(default_factory=lambda: secrets.token_hex(32))
    stopped_with: list[int | None] = field(default_factory=list)  # `t` of each stop call

    def inspect(self) -> dict[str, Any]:
        config = self.body.get("Config", self.body)
        return {
            "Id": self.id,
            "Name": f"/{self.name}",
            "Image": f"sha256:{'0' * 64}",
            "State": {
                "Status": self.status,
                "Running": self.status == "running",
                "ExitCode": 0 if self.status != "exited" else 1,
            },
            "Config": {
                "Image": self.image,
                "Labels": self.labels,
                "Tty": False,
                "Env": config.get("Env"),
                "Cmd": config.get("Cmd"),
                "Entrypoint": config.get("Entrypoint"),
            },
            "HostConfig": self.body.get("HostConfig", {}),
        }

    def summary(self) -> dict[str, Any]:
        return {
            "Id": self.id,
            "Names": [f"/{self.name}"],
            "Image": self.image,
            "Labels": self.labels,
            "State": self.status,
        }


class FakeDockerDaemon:
    """Start with `with FakeDockerDaemon() as daemon:`; `daemon.client()` is a real SDK client."""

    def __init__(
        self,
        *,
        images: tuple[str, ...] = ("vllm/vllm-openai:latest",),
        pullable: tuple[str, ...] = (),
        gpu_support: bool = True,
    ) -> None:
        self.images = set(images)
        self.pullable = set(pullable)
        self.gpu_support = gpu_support
        self.containers: dict[str, FakeContainer] = {}  # by id
        self.requests: list[tuple[str, str]] = []  # (method, path without version)
        self.pulled: list[str] = []
        self.lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    # -- test helpers -----------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self._server.server_address[1]}"

    def client(self) -> docker.DockerClient:
        return docker.DockerClient(base_url=self.url, timeout=10)

    def add_container(
        self, name: str, labels: dict[str, str], status: str = "running", image: str = "x:1"
    ) -> FakeContainer:
        container = FakeContainer(name=name, image=image, labels=labels, status=status)
        with self.lock:
            self.containers[container.id] = container
        return container

    def named(self, name: str) -> FakeContainer | None:
        with self.lock:
            return next((c for c in self.containers.values() if c.name == name), None)

    def __enter__(self) -> FakeDockerDaemon:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    # -- the API ----------------------------------------------------------------------------

    def find(self, ref: str) -> FakeContainer | None:
        with self.lock:
            for container in self.containers.values():
                if ref in (container.id, container.name) or (
                    len(ref) >= 12 and container.id.startswith(ref)
                ):
                    return container
        return None

    def handle(
        self, method: str, path: str, query: dict[str, list[str]], body: bytes
    ) -> tuple[int, Any]:
        """Answer one request: (status, JSON-able body | bytes | None)."""
        self.requests.append((method, path))
        one = {key: values[-1] for key, values in query.items()}

        if method == "GET" and path in ("/version", "/_ping"):
            if path == "/_ping":
                return 200, b"OK"
            return 200, {
                "ApiVersion": API_VERSION,
                "Version": "27.0.0-fake",
                "MinAPIVersion": "1.24",
            }

        if method == "POST" and path == "/containers/create":
            return self._create(one.get("name", ""), json.loads(body or b"{}"))

        if method == "GET" and path == "/containers/json":
            return 200, self._list(one)

        if method == "POST" and path == "/images/create":
            image = f"{one.get('fromImage', '')}:{one.get('tag') or 'latest'}"
            if image not in self.pullable:
                message = f"pull access denied for {image}, repository does not exist"
                return 404, {"message": message}
            self.pulled.append(image)
            self.images.add(image)
            return 200, b'{"status":"Pulling"}\r\n{"status":"Downloaded newer image"}\r\n'

        match = re.fullmatch(r"/images/(.+)/json", path)
        if match and method == "GET":
            name = unquote(match.group(1))
            if name not in self.images:
                return 404, {"message": f"No such image: {name}"}
            return 200, {"Id": f"sha256:{'1' * 64}", "RepoTags": [name]}

        match = re.fullmatch(r"/containers/([^/]+)(/[a-z]+)?", path)
        if not match:
            return 404, {"message": f"page not found: {method} {path}"}
        container = self.find(unquote(match.group(1)))
        if container is None:
            return 404, {"message": f"No such container: {match.group(1)}"}
        action = match.group(2) or ""

        if method == "GET" and action == "/json":
            return 200, container.inspect()
        if method == "POST" and action == "/start":
            return self._start(container)
        if method == "POST" and action == "/stop":
            container.stopped_with.append(int(one["t"]) if "t" in one else None)
            if container.status != "running":
                return 304, None
            container.status = "exited"
            container.logs.append("INFO: shutting down (SIGTERM)")
            return 204, None
        if method == "GET" and action == "/logs":
            return 200, self._logs(container, one.get("tail", "all"))
        if method == "DELETE" and action == "":
            if container.status == "running" and one.get("force") not in ("1", "True", "true"):
                return 409, {"message": "cannot remove a running container: stop it first"}
            with self.lock:
                del self.containers[container.id]
            return 204, None
        return 404, {"message": f"page not found: {method} {path}"}

    def _create(self, name: str, body: dict[str, Any]) -> tuple[int, Any]:
        if name and self.named(name) is not None:
            message = f'Conflict. The container name "/{name}" is already in use.'
            return 409, {"message": message}
        image = body.get("Image", "")
        if image not in self.images:
            return 404, {"message": f"No such image: {image}"}
        container = FakeContainer(
            name=name or secrets.token_hex(4),
            image=image,
            labels=dict(body.get("Labels") or {}),
            body=body,
        )
        with self.lock:
            self.containers[container.id] = container
        return 201, {"Id": container.id, "Warnings": []}

    def _start(self, container: FakeContainer) -> tuple[int, Any]:
        if container.body.get("HostConfig", {}).get("DeviceRequests") and not self.gpu_support:
            message = 'could not select device driver "" with capabilities: [[gpu]]'
            return 500, {"message": message}
        if container.status == "running":
            return 304, None
        container.status = "running"
        cmd = (
            " ".join(container.body.get("Entrypoint") or [])
            + " "
            + " ".join(container.body.get("Cmd") or [])
        )
        container.logs += [f"INFO: fake engine: {cmd.strip()}", "INFO: Application startup."]
        return 204, None

    def _list(self, query: dict[str, str]) -> list[dict[str, Any]]:
        filters: dict[str, list[str]] = json.loads(query.get("filters", "{}") or "{}")
        show_all = query.get("all") in ("1", "True", "true")
        with self.lock:
            found = list(self.containers.values())
        out = []
        for container in found:
            if not show_all and container.status != "running":
                continue
            if not all(_label_matches(container, want) for want in filters.get("label", [])):
                continue
            if any(name not in container.name for name in filters.get("name", [])):
                continue
            out.append(container.summary())
        return out

    @staticmethod
    def _logs(container: FakeContainer, tail: str) -> bytes:
        lines = container.logs if tail == "all" else container.logs[-int(tail) :]
        frames = b""
        for line in lines:
            data = (line + "\n").encode()
            frames += struct.pack(">BxxxL", 1, len(data)) + data  # 1 = stdout
        return frames


def _label_matches(container: FakeContainer, want: str) -> bool:
    key, sep, value = want.partition("=")
    if key not in container.labels:
        return False
    return not sep or container.labels[key] == value


def _handler_for(daemon: FakeDockerDaemon) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            parts = urlsplit(self.path)
            path = re.sub(r"^/v[0-9.]+(?=/)", "", parts.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            status, payload = daemon.handle(self.command, path, parse_qs(parts.query), body)
            if payload is None:
                data, kind = b"", "text/plain"
            elif isinstance(payload, bytes):
                kind = "application/vnd.docker.raw-stream" if "/logs" in path else "text/plain"
                data = payload
            else:
                data, kind = json.dumps(payload).encode(), "application/json"
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if data and status not in (204, 304):
                self.wfile.write(data)

        do_GET = do_POST = do_DELETE = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler
