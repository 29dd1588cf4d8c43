"""Webhook receivers on loopback for callback tests: well-behaved ones (what an n8n Webhook
node is) and hostile ones (a redirect, a 1 GB answer, an answer dripped a byte a second).

A hostile answer is produced as it is sent, never built in memory: the 1 GB body is the same
64 KiB block written again and again until the client hangs up.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal

from .eventually import eventually

Behaviour = Literal["ok", "unavailable", "redirect", "huge", "drip_headers", "drip_body"]

GIGABYTE = 1024**3
_BLOCK = b"x" * 65536


class Receiver:
    """A webhook endpoint on 127.0.0.1 that records every POST and answers as `behaviour`
    says; `redirect_to` is the Location of a `redirect` answer."""

    def __init__(
        self, behaviour: Behaviour = "ok", redirect_to: str = "", tls: Path | None = None
    ) -> None:
        self.behaviour = behaviour
        self.posts: list[dict[str, Any]] = []
        self.credentials: list[str | None] = []
        self.sent_bytes = 0
        self.answers_done = threading.Event()
        self._stopping = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                receiver.posts.append(json.loads(self.rfile.read(length)))
                auth = self.headers.get("Authorization")
                receiver.credentials.append(
                    base64.b64decode(auth.split(" ", 1)[1]).decode() if auth else None
                )
                try:
                    receiver._answer(self)
                except (BrokenPipeError, ConnectionResetError, OSError):
                    pass
                finally:
                    receiver.answers_done.set()
                self.close_connection = True

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(tls / "cert.pem", tls / "key.pem")
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.origin = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.url = f"{self.origin}/webhook"
        self.redirect_to = redirect_to
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )  # stop()'s shutdown() waits up to one poll (0.5 s by default)
        self.thread.start()

    def _answer(self, handler: BaseHTTPRequestHandler) -> None:
        out = handler.wfile
        if self.behaviour == "ok":
            handler.send_response(200)
            handler.send_header("Content-Length", "0")
            handler.end_headers()
        elif self.behaviour == "unavailable":
            handler.send_response(503)
            handler.send_header("Content-Length", "0")
            handler.end_headers()
        elif self.behaviour == "redirect":
            handler.send_response(302)
            handler.send_header("Location", self.redirect_to)
            handler.send_header("Content-Length", "0")
            handler.end_headers()
        elif self.behaviour == "huge":
            handler.send_response(200)
            handler.send_header("Content-Length", str(GIGABYTE))
            handler.end_headers()
            while self.sent_bytes < GIGABYTE and not self._stopping.is_set():
                out.write(_BLOCK)
                self.sent_bytes += len(_BLOCK)
        elif self.behaviour == "drip_headers":
            self._drip(out, b"HTTP/1.1 200 OK\r\n" + b"X-Slow: " + b"y" * 10_000)
        elif self.behaviour == "drip_body":
            handler.send_response(200)
            handler.send_header("Content-Length", "10000")
            handler.end_headers()
            out.flush()
            self._drip(out, b"z" * 10_000)

    def _drip(self, out: Any, data: bytes) -> None:
        """One byte a second: each read the client makes succeeds, so only a deadline of
        its own (not a per-read timeout) ends the exchange."""
        for byte in data:
            if self._stopping.is_set():
                return
            out.write(bytes([byte]))
            out.flush()
            self.sent_bytes += 1
            self._stopping.wait(1.0)

    def wait_posts(self, count: int, timeout: float = 10) -> list[dict[str, Any]]:
        """The posts received, once there are `count` of them."""
        return eventually(
            lambda: self.posts, lambda posts: len(posts) >= count, timeout=timeout,
            interval=0.02, what=f"{count} callback posts at the receiver",
        )  # fmt: skip

    def stop(self) -> None:
        self._stopping.set()
        self.server.shutdown()
        self.server.server_close()


def self_signed(folder: Path, name: str = "localhost") -> Path:
    """`folder` with cert.pem and key.pem: a self-signed certificate for `name` only (no IP
    address in it), made with the openssl command line."""
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "1", "-subj", f"/CN={name}", "-addext", f"subjectAltName=DNS:{name}",
         "-keyout", str(folder / "key.pem"), "-out", str(folder / "cert.pem")],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return folder


def rss_bytes() -> int:
    """This process's resident memory now (Linux /proc)."""
    with open(f"/proc/{os.getpid()}/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRss:
    """Samples this process's RSS every 5 ms while active: `growth` is the highest sample
    minus the level when it started."""

    def __init__(self) -> None:
        self.baseline = rss_bytes()
        self.peak = self.baseline
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, rss_bytes())

    @property
    def growth(self) -> int:
        return self.peak - self.baseline
