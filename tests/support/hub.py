"""A small Hugging Face Hub protocol server for tests.

Why it exists: TalkTuah's download path is only trustworthy if it is exercised against the
real ``huggingface_hub`` client talking real HTTP, including the ugly parts (dropped
connections, stalls, 5xx bursts, slow links, corrupted bytes). Mocking the client would test
our assumptions about the protocol rather than the protocol. This server speaks the subset of
the Hub API that ``huggingface_hub`` 2.4 uses for downloads (measured, not guessed -- see
``tests/test_hub_server.py``) and lets a test inject faults at the socket level.

It runs in a background thread of the pytest process (``ThreadingHTTPServer``, HTTP/1.1
keep-alive) so a test can change ``hub.faults`` between, or even during, requests.

Routes (model repos only, ids are ``org/name``):

- ``GET  /api/models/{id}`` and ``/api/models/{id}/revision/{rev}`` -- model info; siblings
  carry ``size``/``blobId``/``lfs`` only with ``?blobs=true`` (like the real Hub).
- ``GET  /api/models/{id}/tree/{rev}[/{path}]?recursive=..&expand=..`` -- tree listing.
- ``POST /api/models/{id}/paths-info/{rev}`` -- ``HfApi.get_paths_info``.
- ``GET  /api/models/{id}/refs`` -- ``HfApi.list_repo_refs``.
- ``HEAD|GET /{id}/resolve/{rev}/{path}`` -- file metadata/content, ``Range`` supported.
- ``HEAD|GET /_cdn/{sha256}`` -- LFS content when ``redirect_lfs`` is on (served on the
  ``localhost`` origin so the client treats it as a foreign CDN, as with the real Hub).

Anything else gets a 404 and is recorded with ``kind="unknown"`` so missing routes show up in
``hub.unexpected()``.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import random
import socket
import threading
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

LFS_SUFFIXES: tuple[str, ...] = (
    ".safetensors",
    ".bin",
    ".gguf",
    ".pt",
    ".pth",
    ".onnx",
    ".h5",
    ".msgpack",
)
"""File suffixes that are always stored as LFS, whatever their size (as on real model repos)."""

DEFAULT_TOKEN = "hf_test_token_talktuah"
"""Token the hub accepts for gated/private repos unless another one is configured."""

LAST_MODIFIED = "2024-01-01T00:00:00.000Z"
"""Fixed timestamp: responses must be deterministic so tests can compare them."""

_CHUNK = 64 * 1024


def git_blob_sha1(data: bytes) -> str:
    """Git object id of ``data`` as a blob; the Hub uses it as the ETag of non-LFS files."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    """The git-lfs pointer file that a real repo would store in git in place of the content."""
    spec = "https://git-lfs.github.com/spec/v1"
    return f"version {spec}\noid sha256:{sha256}\nsize {size}\n".encode()


def commit_sha(files: dict[str, bytes]) -> str:
    """Stable 40-hex commit id derived from content only.

    Why: tests and cache layouts (``snapshots/<sha>``) need a sha that is identical across
    runs and processes for the same content, and different as soon as any byte changes.
    """
    h = hashlib.sha1()
    for path in sorted(files):
        h.update(path.encode() + b"\0" + hashlib.sha256(files[path]).hexdigest().encode() + b"\n")
    return h.hexdigest()


@dataclass(frozen=True)
class HubFile:
    """One file of one commit, with everything the protocol advertises about it."""

    path: str
    size: int
    sha256: str
    blob_id: str  # git blob sha1 of the content, or of the LFS pointer for LFS files
    lfs: bool
    pointer_size: int

    @property
    def etag(self) -> str:
        """What the Hub puts in ``ETag``: sha256 for LFS files, git blob sha1 otherwise."""
        return self.sha256 if self.lfs else self.blob_id


@dataclass
class RepoState:
    """In-memory index of a repo: branches -> commit sha, commit sha -> files."""

    repo_id: str
    gated: bool = False
    private: bool = False
    refs: dict[str, str] = field(default_factory=dict)
    commits: dict[str, dict[str, HubFile]] = field(default_factory=dict)


@dataclass(frozen=True)
class RequestRecord:
    """One request as the hub saw it; tests assert on these instead of guessing client behaviour.

    ``path`` is the unquoted repo-relative file path (resolve/tree/paths-info) or ``None``;
    ``url_path`` is the full unquoted URL path without the query string.
    """

    method: str
    url_path: str
    query: str
    kind: str  # model_info | tree | paths_info | refs | resolve | cdn | unknown
    repo_id: str | None
    revision: str | None
    path: str | None
    range: str | None
    status: int
    bytes_sent: int
    dropped: bool
    authorization: str | None
    headers: dict[str, str]
    started: float
    duration: float


@dataclass
class _Rule:
    """A one-shot-ish fault: applies to the next ``times`` matching requests."""

    kind: str  # fail | drop | stall
    times: int
    path_glob: str | None
    method: str | None = None
    status: int = 503
    n_bytes: int = 0
    seconds: float = 0.0


class Faults:
    """Runtime-settable fault injection, consulted by every request.

    Why here rather than in a proxy: the server knows exactly where it is in a body, so a test
    can say "drop after 100 KB of model.safetensors" deterministically.

    ``path_glob`` is matched (fnmatch) against the repo-relative file path *and* the full URL
    path, so ``"*.safetensors"`` and ``"/api/*"`` both work. For body faults (``drop_after``,
    ``stall``) a ``None`` glob means "file downloads only" (resolve/CDN GETs), so API JSON is
    never cut by accident; for ``fail_next`` ``None`` means "any request".
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[_Rule] = []
        self._corrupt: set[tuple[str, str]] = set()
        self.throttle_bps: int | None = None
        """Per-connection body rate limit in bytes/s (``None`` = unlimited)."""
        self.down: bool = False
        """When true every request is answered ``down_status`` (Hub outage)."""
        self.down_status: int = 503
        self.hangup: bool = False
        """When true every connection is closed right after the request line, no response."""
        self.ignore_range: bool = False
        """When true file GETs ignore ``Range`` and answer 200 with the whole file, as some
        proxies and mirrors do."""

    def fail_next(
        self,
        n: int,
        status: int = 503,
        path_glob: str | None = None,
        *,
        method: str | None = None,
    ) -> None:
        """Answer the next ``n`` matching requests with ``status`` (a 5xx burst)."""
        with self._lock:
            self._rules.append(_Rule("fail", n, path_glob, method=method, status=status))

    def drop_after(
        self,
        n_bytes: int,
        times: int = 1,
        path_glob: str | None = None,
        *,
        method: str | None = None,
    ) -> None:
        """Close the socket after ``n_bytes`` of body on the next ``times`` matching responses.

        Only responses whose body is longer than ``n_bytes`` consume the rule (a drop must
        really happen mid-body).
        """
        with self._lock:
            self._rules.append(_Rule("drop", times, path_glob, method=method, n_bytes=n_bytes))

    def stall(
        self,
        seconds: float,
        after_bytes: int = 0,
        times: int = 1,
        path_glob: str | None = None,
        *,
        method: str | None = None,
    ) -> None:
        """Stop sending for ``seconds`` after ``after_bytes`` of body (headers already sent)."""
        with self._lock:
            rule = _Rule("stall", times, path_glob, method=method, n_bytes=after_bytes)
            rule.seconds = seconds
            self._rules.append(rule)

    def corrupt(self, repo_id: str, path: str) -> None:
        """Serve different bytes (same size) than advertised for this file, until cleared."""
        with self._lock:
            self._corrupt.add((repo_id, path))

    def uncorrupt(self, repo_id: str, path: str) -> None:
        """Serve the real bytes of this file again."""
        with self._lock:
            self._corrupt.discard((repo_id, path))

    def clear(self) -> None:
        """Remove every fault (rules, corruption, throttle, outage)."""
        with self._lock:
            self._rules.clear()
            self._corrupt.clear()
        self.throttle_bps = None
        self.down = False
        self.down_status = 503
        self.hangup = False
        self.ignore_range = False

    def pending(self) -> int:
        """Number of rule firings not yet consumed (lets a test check its faults were hit)."""
        with self._lock:
            return sum(r.times for r in self._rules)

    def is_corrupt(self, repo_id: str, path: str) -> bool:
        with self._lock:
            return (repo_id, path) in self._corrupt

    def _take(
        self,
        kind: str,
        method: str,
        url_path: str,
        file_path: str | None,
        is_file_body: bool,
        body_len: int | None = None,
    ) -> _Rule | None:
        """Consume and return the first matching rule of ``kind``, if any."""
        with self._lock:
            for rule in self._rules:
                if rule.kind != kind or rule.times <= 0:
                    continue
                if rule.method is not None and rule.method.upper() != method:
                    continue
                if rule.path_glob is None:
                    if kind != "fail" and not is_file_body:
                        continue
                elif not (
                    fnmatch.fnmatchcase(url_path, rule.path_glob)
                    or (file_path is not None and fnmatch.fnmatchcase(file_path, rule.path_glob))
                ):
                    continue
                if body_len is not None:
                    if kind == "drop" and body_len <= rule.n_bytes:
                        continue
                    if kind == "stall" and rule.n_bytes > 0 and body_len <= rule.n_bytes:
                        continue
                rule.times -= 1
                self._rules = [r for r in self._rules if r.times > 0]
                return rule
        return None


class _Server(ThreadingHTTPServer):
    """ThreadingHTTPServer that never blocks shutdown and keeps quiet about client hang-ups."""

    daemon_threads = True
    block_on_close = False
    hub: Hub

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hanging up mid-body (or us dropping them on purpose) is normal here.
        pass


class _Dropped(Exception):
    """Raised inside a handler when a fault closed the connection on purpose."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "TalkTuahTestHub/1.0"
    timeout = 15  # idle keep-alive connections and stuck peers don't outlive a test for long
    server: _Server

    # -- plumbing ---------------------------------------------------------------------------
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def setup(self) -> None:
        super().setup()
        self.server.hub._track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.hub._track(self.connection, add=False)

    def do_GET(self) -> None:
        self.server.hub._dispatch(self)

    def do_HEAD(self) -> None:
        self.server.hub._dispatch(self)

    def do_POST(self) -> None:
        self.server.hub._dispatch(self)

    def do_PUT(self) -> None:
        self.server.hub._dispatch(self)

    def do_DELETE(self) -> None:
        self.server.hub._dispatch(self)


@dataclass
class _Ctx:
    """Per-request bookkeeping that ends up in a RequestRecord."""

    handler: _Handler
    method: str
    url_path: str
    query: str
    params: dict[str, list[str]]
    started: float
    kind: str = "unknown"
    repo_id: str | None = None
    revision: str | None = None
    path: str | None = None
    status: int = 0
    bytes_sent: int = 0
    dropped: bool = False


@dataclass
class _Error(Exception):
    """An HTTP error answer in the Hub's style (``X-Error-Code`` + JSON body)."""

    status: int
    code: str | None
    message: str
    extra_headers: dict[str, str] = field(default_factory=dict)


class Hub:
    """A Hugging Face Hub look-alike serving repos that tests build on disk.

    Usage::

        with Hub(tmp_path / "hub") as hub:
            sha = hub.add_repo("org/model", {"config.json": b"{}"})
            snapshot_download("org/model", endpoint=hub.url, cache_dir=...)
    """

    def __init__(
        self,
        root: Path,
        *,
        token: str = DEFAULT_TOKEN,
        redirect_lfs: bool = False,
        host: str = "127.0.0.1",
    ) -> None:
        """``root`` holds the content-addressed file store; ``token`` unlocks gated/private
        repos; ``redirect_lfs`` makes LFS downloads 302 to a "CDN" origin like the real Hub."""
        self.root = Path(root)
        self.token = token
        self.redirect_lfs = redirect_lfs
        self.host = host
        self.gated_status = 401
        """Status for gated repos without a token: the Hub answers 401 to anonymous callers and
        403 to logged-in users who were not granted access; the client keys on X-Error-Code."""
        self.faults = Faults()
        self._repos: dict[str, RepoState] = {}
        self._repos_lock = threading.Lock()
        self._log: list[RequestRecord] = []
        self._log_lock = threading.Lock()
        self._open: list[_Ctx] = []  # requests in flight
        self._idle = threading.Condition(self._log_lock)
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None
        self._stopping = threading.Event()
        self.internal_errors: list[str] = []
        """Tracebacks of hub bugs (answered as 500); a test can assert this stays empty."""
        (self.root / "blobs").mkdir(parents=True, exist_ok=True)

    # -- lifecycle --------------------------------------------------------------------------
    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("hub not started")
        return self._port

    @property
    def url(self) -> str:
        """Endpoint to hand to ``huggingface_hub`` (``endpoint=hub.url``)."""
        return f"http://{self.host}:{self.port}"

    @property
    def cdn_url(self) -> str:
        """Same server, different origin: the client drops auth and skips HEAD-following there."""
        return f"http://localhost:{self.port}"

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> None:
        """Start serving. After ``stop()`` it restarts on the same port ("the Hub came back")."""
        if self._server is not None:
            return
        self._stopping.clear()
        server = _Server((self.host, self._port or 0), _Handler, bind_and_activate=True)
        server.hub = self
        self._server = server
        self._port = server.server_address[1]
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.01},  # stop() waits up to one poll: once per test
            name=f"test-hub-{self._port}",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop promptly: end the accept loop, wake stalled bodies, cut open connections."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        with self._conns_lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Hub:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _track(self, conn: socket.socket, *, add: bool) -> None:
        with self._conns_lock:
            if add:
                self._conns.add(conn)
            else:
                self._conns.discard(conn)

    # -- content ----------------------------------------------------------------------------
    def add_repo(
        self,
        repo_id: str,
        files: dict[str, bytes],
        *,
        revision: str = "main",
        gated: bool | None = None,
        private: bool | None = None,
        lfs_min_size: int = 1024,
    ) -> str:
        """Create (or add a commit to) a repo and point branch ``revision`` at it.

        Files of at least ``lfs_min_size`` bytes, or with a weight-like suffix, are LFS.
        Calling again with new content moves the branch (old commits stay reachable by sha),
        which is how a test simulates "upstream published a new version". Returns the commit
        sha. ``gated``/``private`` left as ``None`` keep the repo's current setting.
        """
        if repo_id.count("/") != 1 or not all(repo_id.split("/")):
            raise ValueError(f"repo_id must be 'org/name', got {repo_id!r}")
        sha = commit_sha(files)
        entries: dict[str, HubFile] = {}
        for path, data in sorted(files.items()):
            if path.startswith("/") or ".." in path.split("/") or not path:
                raise ValueError(f"bad repo path {path!r}")
            digest = hashlib.sha256(data).hexdigest()
            blob = self.root / "blobs" / digest
            if not blob.exists():
                tmp = blob.with_suffix(".tmp")
                tmp.write_bytes(data)
                tmp.replace(blob)
            is_lfs = len(data) >= lfs_min_size or path.endswith(LFS_SUFFIXES)
            pointer = lfs_pointer(digest, len(data))
            entries[path] = HubFile(
                path=path,
                size=len(data),
                sha256=digest,
                blob_id=git_blob_sha1(pointer if is_lfs else data),
                lfs=is_lfs,
                pointer_size=len(pointer) if is_lfs else 0,
            )
        with self._repos_lock:
            repo = self._repos.setdefault(repo_id, RepoState(repo_id=repo_id))
            if gated is not None:
                repo.gated = gated
            if private is not None:
                repo.private = private
            repo.commits[sha] = entries
            repo.refs[revision] = sha
        return sha

    def set_ref(self, repo_id: str, revision: str, sha: str) -> None:
        """Point a branch at an existing commit (e.g. roll ``main`` back)."""
        with self._repos_lock:
            repo = self._repos[repo_id]
            if sha not in repo.commits:
                raise KeyError(sha)
            repo.refs[revision] = sha

    def remove_repo(self, repo_id: str) -> None:
        """Make a repo disappear (it then answers 401 RepoNotFound, like a deleted repo)."""
        with self._repos_lock:
            self._repos.pop(repo_id, None)

    def set_gated(self, repo_id: str, gated: bool = True) -> None:
        """Gate or un-gate a repo; gated repos need ``Authorization: Bearer <hub.token>``."""
        with self._repos_lock:
            self._repos[repo_id].gated = gated

    def file_bytes(self, repo_id: str, path: str, revision: str = "main") -> bytes:
        """The true content of a file (what a correct download must produce)."""
        f = self._lookup_file(repo_id, revision, path)
        return (self.root / "blobs" / f.sha256).read_bytes()

    def file_info(self, repo_id: str, path: str, revision: str = "main") -> HubFile:
        return self._lookup_file(repo_id, revision, path)

    def _lookup_file(self, repo_id: str, revision: str, path: str) -> HubFile:
        with self._repos_lock:
            repo = self._repos[repo_id]
            sha = repo.refs.get(revision, revision)
            return repo.commits[sha][path]

    # -- log --------------------------------------------------------------------------------
    @property
    def log(self) -> list[RequestRecord]:
        """A snapshot copy of every request so far (safe to iterate while serving).

        Why it waits: a request is recorded right after its last byte is written, so a client
        call can return a moment before its record lands. Reading the log waits (up to 1 s)
        for requests in flight to finish; use ``log_now()`` while a transfer is deliberately
        still running.
        """
        with self._idle:
            self._idle.wait_for(lambda: not self._open, timeout=1.0)
            return list(self._log)

    def sending(self, path: str) -> list[int]:
        """The bytes sent so far by each GET of the repo file `path` still in flight: a test
        acts once a transfer is on the wire (`eventually(lambda: hub.sending(...))`)."""
        with self._log_lock:
            return [c.bytes_sent for c in self._open if c.method == "GET" and c.path == path]

    def log_now(self) -> list[RequestRecord]:
        """The log as it is right now, without waiting for requests in flight."""
        with self._log_lock:
            return list(self._log)

    def clear_log(self) -> None:
        with self._log_lock:
            self._log.clear()

    def requests(
        self, *, method: str | None = None, kind: str | None = None, repo_id: str | None = None
    ) -> list[RequestRecord]:
        """Filtered view of the log."""
        return [
            r
            for r in self.log
            if (method is None or r.method == method)
            and (kind is None or r.kind == kind)
            and (repo_id is None or r.repo_id == repo_id)
        ]

    def fetched_files(self, repo_id: str) -> list[str]:
        """Repo paths that had a content GET which actually sent body bytes, first-fetch order.

        Why: proves a resumed download skipped files it had already completed.
        """
        seen: dict[str, None] = {}
        for r in self.log:
            if (
                r.method == "GET"
                and r.kind in ("resolve", "cdn")
                and r.repo_id == repo_id
                and r.path is not None
                and r.bytes_sent > 0
            ):
                seen.setdefault(r.path, None)
        return list(seen)

    def unexpected(self) -> list[RequestRecord]:
        """Requests that hit no known route (a client feature the hub does not speak yet)."""
        return self.requests(kind="unknown")

    def _record(self, ctx: _Ctx) -> None:
        h = ctx.handler
        headers = {k.lower(): v for k, v in h.headers.items()}
        rec = RequestRecord(
            method=ctx.method,
            url_path=ctx.url_path,
            query=ctx.query,
            kind=ctx.kind,
            repo_id=ctx.repo_id,
            revision=ctx.revision,
            path=ctx.path,
            range=headers.get("range"),
            status=ctx.status,
            bytes_sent=ctx.bytes_sent,
            dropped=ctx.dropped,
            authorization=headers.get("authorization"),
            headers=headers,
            started=ctx.started,
            duration=time.monotonic() - ctx.started,
        )
        with self._idle:
            self._log.append(rec)
            self._open = [c for c in self._open if c is not ctx]
            self._idle.notify_all()

    # -- request handling -------------------------------------------------------------------
    def _dispatch(self, h: _Handler) -> None:
        split = urlsplit(h.path)
        raw_segments = split.path.split("/")
        ctx = _Ctx(
            handler=h,
            method=h.command,
            url_path=unquote(split.path),
            query=split.query,
            params=parse_qs(split.query, keep_blank_values=True),
            started=time.monotonic(),
        )
        with self._idle:
            self._open.append(ctx)
        try:
            body = self._read_request_body(h)
            self._classify(ctx, raw_segments)
            if self.faults.hangup:
                ctx.dropped = True
                self._hang_up(h)
                return
            if self.faults.down:
                raise _Error(self.faults.down_status, None, "Hub is down (test fault)")
            rule = self.faults._take("fail", ctx.method, ctx.url_path, ctx.path, False)
            if rule is not None:
                raise _Error(rule.status, None, f"Injected {rule.status} (test fault)")
            self._route(ctx, body)
        except _Error as err:
            self._send_error(ctx, err)
        except _Dropped:
            ctx.dropped = True
        except OSError:  # the client hung up (or timed out) mid-response
            ctx.dropped = True
            h.close_connection = True
        except Exception:  # a bug in the hub: answer 500 and keep it visible to the test
            self.internal_errors.append(traceback.format_exc())
            if ctx.status == 0:
                self._send_error(ctx, _Error(500, None, "test hub internal error"))
            else:
                self._hang_up(h)
                ctx.dropped = True
        finally:
            self._record(ctx)

    @staticmethod
    def _read_request_body(h: _Handler) -> bytes:
        length = int(h.headers.get("Content-Length") or 0)
        return h.rfile.read(length) if length > 0 else b""

    @staticmethod
    def _hang_up(h: _Handler) -> None:
        h.close_connection = True
        try:
            h.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _classify(self, ctx: _Ctx, raw: list[str]) -> None:
        """Work out route kind, repo, revision and path from the raw (still quoted) segments."""
        seg = [unquote(s) for s in raw]
        # ['', 'api', 'models', org, name, ...]
        if len(seg) >= 5 and seg[1] == "api" and seg[2] == "models":
            ctx.repo_id = f"{seg[3]}/{seg[4]}"
            rest = seg[5:]
            if not rest or rest == [""]:
                ctx.kind, ctx.revision = "model_info", "main"
            elif rest[0] == "revision" and len(rest) == 2:
                ctx.kind, ctx.revision = "model_info", rest[1]
            elif rest[0] == "tree" and len(rest) >= 2:
                ctx.kind, ctx.revision = "tree", rest[1]
                ctx.path = "/".join(rest[2:]).strip("/") or None
            elif rest[0] == "paths-info" and len(rest) == 2:
                ctx.kind, ctx.revision = "paths_info", rest[1]
            elif rest == ["refs"]:
                ctx.kind = "refs"
            else:
                ctx.repo_id = None
        elif len(seg) >= 6 and seg[3] == "resolve" and seg[1] not in ("api", "_cdn"):
            ctx.kind = "resolve"
            ctx.repo_id = f"{seg[1]}/{seg[2]}"
            ctx.revision = seg[4]
            ctx.path = "/".join(seg[5:])
        elif len(seg) == 3 and seg[1] == "_cdn":
            ctx.kind = "cdn"
            ctx.path = None
        allowed = {
            "model_info": ("GET",),
            "tree": ("GET",),
            "refs": ("GET",),
            "paths_info": ("POST",),
            "resolve": ("GET", "HEAD"),
            "cdn": ("GET", "HEAD"),
        }
        if ctx.kind != "unknown" and ctx.method not in allowed[ctx.kind]:
            ctx.kind = "unknown"
            ctx.repo_id = ctx.revision = ctx.path = None

    def _route(self, ctx: _Ctx, body: bytes) -> None:
        if ctx.kind == "unknown":
            raise _Error(404, None, f"No route for {ctx.method} {ctx.url_path} (test hub)")
        if ctx.kind == "cdn":
            self._serve_cdn(ctx)
            return
        assert ctx.repo_id is not None
        repo = self._authorized_repo(ctx)
        if ctx.kind == "refs":
            self._send_json(ctx, self._refs_json(repo))
            return
        assert ctx.revision is not None
        sha, files = self._resolve_revision(repo, ctx.revision)
        if ctx.kind == "model_info":
            blobs = _truthy(ctx.params.get("blobs"))
            self._send_json(ctx, self._model_info_json(repo, sha, files, blobs=blobs))
        elif ctx.kind == "tree":
            recursive = _truthy(ctx.params.get("recursive"))
            expand = _truthy(ctx.params.get("expand"))
            self._send_json(ctx, self._tree_json(sha, files, ctx.path, recursive, expand))
        elif ctx.kind == "paths_info":
            form = parse_qs(body.decode(), keep_blank_values=True)
            expand = _truthy(form.get("expand"))
            self._send_json(ctx, self._paths_info_json(sha, files, form.get("paths", []), expand))
        elif ctx.kind == "resolve":
            assert ctx.path is not None
            self._serve_resolve(ctx, repo, sha, files)

    # -- auth / lookup ----------------------------------------------------------------------
    def _authorized_repo(self, ctx: _Ctx) -> RepoState:
        assert ctx.repo_id is not None
        with self._repos_lock:
            repo = self._repos.get(ctx.repo_id)
        auth = ctx.handler.headers.get("Authorization")
        has_token = auth == f"Bearer {self.token}"
        if repo is None or (repo.private and not has_token):
            raise _Error(
                401,
                "RepoNotFound",
                "Repository not found",
                {"X-Error-Message": "Repository not found"},
            )
        if repo.gated and not has_token:
            msg = "Access to model {} is restricted. You must be authenticated to access it."
            raise _Error(
                self.gated_status,
                "GatedRepo",
                msg.format(repo.repo_id),
                {"X-Error-Message": msg.format(repo.repo_id)},
            )
        return repo

    def _resolve_revision(self, repo: RepoState, revision: str) -> tuple[str, dict[str, HubFile]]:
        with self._repos_lock:
            sha = repo.refs.get(revision)
            if sha is None and revision in repo.commits:
                sha = revision
            if sha is None:
                raise _Error(
                    404,
                    "RevisionNotFound",
                    f"Invalid rev id: {revision}",
                    {"X-Error-Message": f"Invalid rev id: {revision}"},
                )
            return sha, dict(repo.commits[sha])

    # -- JSON routes ------------------------------------------------------------------------
    @staticmethod
    def _refs_json(repo: RepoState) -> dict[str, Any]:
        return {
            "branches": [
                {"name": name, "ref": f"refs/heads/{name}", "targetCommit": sha}
                for name, sha in sorted(repo.refs.items())
            ],
            "converts": [],
            "tags": [],
            "pullRequests": [],
        }

    @staticmethod
    def _model_info_json(
        repo: RepoState, sha: str, files: dict[str, HubFile], *, blobs: bool
    ) -> dict[str, Any]:
        siblings: list[dict[str, Any]] = []
        for f in files.values():
            sib: dict[str, Any] = {"rfilename": f.path}
            if blobs:
                sib["size"] = f.size
                sib["blobId"] = f.blob_id
                if f.lfs:
                    sib["lfs"] = {"sha256": f.sha256, "size": f.size, "pointerSize": f.pointer_size}
            siblings.append(sib)
        org, name = repo.repo_id.split("/")
        info: dict[str, Any] = {
            "_id": hashlib.sha1(repo.repo_id.encode()).hexdigest()[:24],
            "id": repo.repo_id,
            "modelId": repo.repo_id,
            "author": org,
            "sha": sha,
            "lastModified": LAST_MODIFIED,
            "createdAt": LAST_MODIFIED,
            "private": repo.private,
            "gated": "manual" if repo.gated else False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "library_name": "transformers",
            "siblings": siblings,
            "spaces": [],
        }
        if blobs:
            info["usedStorage"] = sum(f.size for f in files.values())
        return info

    @staticmethod
    def _entry_json(f: HubFile, sha: str, expand: bool) -> dict[str, Any]:
        entry: dict[str, Any] = {"type": "file", "oid": f.blob_id, "size": f.size, "path": f.path}
        if f.lfs:
            entry["lfs"] = {"oid": f.sha256, "size": f.size, "pointerSize": f.pointer_size}
        if expand:
            entry["lastCommit"] = {"id": sha, "title": "Upload files", "date": LAST_MODIFIED}
        return entry

    @staticmethod
    def _dir_json(path: str) -> dict[str, Any]:
        return {"type": "directory", "oid": git_blob_sha1(path.encode()), "size": 0, "path": path}

    def _tree_json(
        self,
        sha: str,
        files: dict[str, HubFile],
        base: str | None,
        recursive: bool,
        expand: bool,
    ) -> list[dict[str, Any]]:
        prefix = f"{base}/" if base else ""
        if base and base not in _all_dirs(files):
            raise _Error(
                404,
                "EntryNotFound",
                f"{base} does not exist on revision {sha}",
                {"X-Repo-Commit": sha},
            )
        out: list[dict[str, Any]] = []
        dirs_done: set[str] = set()
        for f in sorted(files.values(), key=lambda x: x.path):
            if not f.path.startswith(prefix):
                continue
            rel = f.path[len(prefix) :]
            parts = rel.split("/")
            # directories between base and the file
            for i in range(1, len(parts)):
                d = prefix + "/".join(parts[:i])
                if d in dirs_done:
                    continue
                if recursive or i == 1:
                    dirs_done.add(d)
                    out.append(self._dir_json(d))
            if recursive or len(parts) == 1:
                out.append(self._entry_json(f, sha, expand))
        return out

    def _paths_info_json(
        self, sha: str, files: dict[str, HubFile], paths: list[str], expand: bool
    ) -> list[dict[str, Any]]:
        dirs = _all_dirs(files)
        out: list[dict[str, Any]] = []
        for p in paths:
            p = p.strip("/")
            if p in files:
                out.append(self._entry_json(files[p], sha, expand))
            elif p in dirs:
                out.append(self._dir_json(p))
        return out

    # -- file routes ------------------------------------------------------------------------
    def _serve_resolve(
        self, ctx: _Ctx, repo: RepoState, sha: str, files: dict[str, HubFile]
    ) -> None:
        assert ctx.path is not None
        f = files.get(ctx.path)
        if f is None:
            raise _Error(
                404,
                "EntryNotFound",
                f"{ctx.path} does not exist on revision {sha}",
                {"X-Repo-Commit": sha, "X-Error-Message": "Entry not found"},
            )
        meta = {
            "X-Repo-Commit": sha,
            "ETag": f'"{f.etag}"',
            "Accept-Ranges": "bytes",
            "Vary": "Origin, Accept, Range",
        }
        if f.lfs:
            meta["X-Linked-Etag"] = f'"{f.sha256}"'
            meta["X-Linked-Size"] = str(f.size)
        if f.lfs and self.redirect_lfs:
            # Like the real Hub: the metadata rides on the 302, the bytes live elsewhere.
            location = f"{self.cdn_url}/_cdn/{f.sha256}?repo={ctx.repo_id}&path={ctx.path}"
            ctx.status = 302
            h = ctx.handler
            h.send_response(302)
            for k, v in meta.items():
                h.send_header(k, v)
            h.send_header("Location", location)
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        self._serve_bytes(ctx, f, repo.repo_id, meta)

    def _serve_cdn(self, ctx: _Ctx) -> None:
        digest = ctx.url_path.rsplit("/", 1)[-1]
        repo_id = ctx.params.get("repo", [None])[-1]
        path = ctx.params.get("path", [None])[-1]
        ctx.repo_id, ctx.path = repo_id, path
        blob = self.root / "blobs" / digest
        if len(digest) != 64 or not blob.is_file():
            raise _Error(404, None, "No such blob")
        size = blob.stat().st_size
        f = HubFile(path or digest, size, digest, "", True, 0)
        self._serve_bytes(ctx, f, repo_id or "", {"ETag": f'"{digest}"', "Accept-Ranges": "bytes"})

    def _serve_bytes(self, ctx: _Ctx, f: HubFile, repo_id: str, meta: dict[str, str]) -> None:
        h = ctx.handler
        size = f.size
        rng = _parse_range(h.headers.get("Range"), size)
        if_range = h.headers.get("If-Range")
        if self.faults.ignore_range or (if_range is not None and if_range != meta.get("ETag")):
            rng = None  # RFC 9110 13.1.5: a validator that no longer matches means "send it all"
        start, end = rng if rng is not None else (0, size - 1)
        length = max(0, end - start + 1)
        status = 206 if rng is not None else 200
        ctx.status = status
        h.send_response(status)
        for k, v in meta.items():
            h.send_header(k, v)
        h.send_header("Content-Type", "application/octet-stream")
        h.send_header("Content-Length", str(length))
        if rng is not None:
            h.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        h.end_headers()
        if ctx.method == "HEAD" or length == 0:
            return
        corrupt = self.faults.is_corrupt(repo_id, f.path)
        with open(self.root / "blobs" / f.sha256, "rb") as fh:
            fh.seek(start)
            chunks = _read_chunks(fh, length, corrupt)
            self._write_body(ctx, chunks, length, is_file_body=True)

    def _send_json(self, ctx: _Ctx, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        h = ctx.handler
        ctx.status = 200
        h.send_response(200)
        h.send_header("Content-Type", "application/json; charset=utf-8")
        h.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        if ctx.method != "HEAD":
            self._write_body(ctx, iter([data]), len(data), is_file_body=False)

    def _send_error(self, ctx: _Ctx, err: _Error) -> None:
        data = json.dumps({"error": err.message}).encode()
        h = ctx.handler
        ctx.status = err.status
        try:
            h.send_response(err.status)
            if err.code is not None:
                h.send_header("X-Error-Code", err.code)
            for k, v in err.extra_headers.items():
                # A message may quote the client's revision; headers are latin-1 only, and
                # a non-ASCII one crashed the handler mid-answer (the real Hub answers 404).
                h.send_header(k, v.encode("ascii", "backslashreplace").decode())
            h.send_header("Content-Type", "application/json; charset=utf-8")
            h.send_header("Content-Length", str(len(data)))
            h.end_headers()
            if ctx.method != "HEAD":
                h.wfile.write(data)
                ctx.bytes_sent = len(data)
        except OSError:
            ctx.dropped = True
            h.close_connection = True

    def _write_body(
        self, ctx: _Ctx, chunks: Iterator[bytes], length: int, *, is_file_body: bool
    ) -> None:
        """Send a body, honouring throttle / stall / drop faults at exact byte offsets."""
        h = ctx.handler
        faults = self.faults
        drop = faults._take("drop", ctx.method, ctx.url_path, ctx.path, is_file_body, length)
        stall = faults._take("stall", ctx.method, ctx.url_path, ctx.path, is_file_body, length)
        t0 = time.monotonic()
        sent = 0
        pending = b""
        for chunk in chunks:
            pending += chunk
            while pending:
                bps = faults.throttle_bps
                piece_len = len(pending)
                if bps:
                    piece_len = min(piece_len, max(1, bps // 50))
                if drop is not None:
                    piece_len = min(piece_len, drop.n_bytes - sent)
                if stall is not None and stall.n_bytes > sent:
                    piece_len = min(piece_len, stall.n_bytes - sent)
                if stall is not None and stall.n_bytes == sent:
                    if self._stopping.wait(stall.seconds):
                        raise _Dropped()
                    stall = None
                    continue
                if drop is not None and drop.n_bytes == sent:
                    self._hang_up(h)
                    raise _Dropped()
                piece, pending = pending[:piece_len], pending[piece_len:]
                if bps:
                    # Sleep until this piece is "due": total time >= bytes / bps, a lower bound.
                    due = t0 + (sent + len(piece)) / bps
                    delay = due - time.monotonic()
                    if delay > 0 and self._stopping.wait(delay):
                        raise _Dropped()
                h.wfile.write(piece)
                sent += len(piece)
                ctx.bytes_sent = sent


def make_files(
    n_files: int = 2,
    size: int = 64 * 1024,
    seed: int = 0,
    *,
    model_type: str = "llama",
) -> dict[str, bytes]:
    """Content for a small model-shaped repo: ``config.json``, ``README.md``,
    ``tokenizer_config.json`` and ``n_files`` sharded ``*.safetensors`` of ``size`` random bytes.

    Why random bytes: the weights are LFS files and must not compress or repeat, so a wrong
    offset in a resumed download shows up as a sha256 mismatch. ``seed`` makes it reproducible
    and lets two repos differ.
    """
    rng = random.Random(seed)
    files: dict[str, bytes] = {
        "config.json": json.dumps({"model_type": model_type, "seed": seed}, indent=2).encode(),
        "README.md": f"# test model (seed {seed})\n".encode(),
        "tokenizer_config.json": json.dumps({"model_max_length": 128}).encode(),
    }
    for i in range(1, n_files + 1):
        name = f"model-{i:05d}-of-{n_files:05d}.safetensors" if n_files > 1 else "model.safetensors"
        files[name] = rng.randbytes(size)
    return files


def _truthy(values: list[str] | None) -> bool:
    if not values:
        return False
    return values[-1].lower() in ("1", "true", "yes")


def _all_dirs(files: dict[str, HubFile]) -> set[str]:
    dirs: set[str] = set()
    for p in files:
        parts = p.split("/")
        for i in range(1, len(parts)):
            dirs.add("/".join(parts[:i]))
    return dirs


def _parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """Parse a single ``bytes=`` range; ``None`` = no (or ignored) range, 416 if unsatisfiable."""
    if not header:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None  # multi-range / other units: serve the whole thing, as many servers do
    unsatisfiable = _Error(416, None, "Range Not Satisfiable", {"Content-Range": f"bytes */{size}"})
    first, sep, last = spec.strip().partition("-")
    try:
        if not sep:
            raise ValueError(spec)
        if first == "":
            n = int(last)
            if n <= 0 or size == 0:
                raise unsatisfiable
            return (max(0, size - n), size - 1)
        start = int(first)
        end = int(last) if last else size - 1
    except ValueError:
        raise unsatisfiable from None
    if start >= size or end < start:
        raise unsatisfiable
    return (start, min(end, size - 1))


_FLIP = bytes(b ^ 0xFF for b in range(256))


def _read_chunks(fh: Any, length: int, corrupt: bool) -> Iterator[bytes]:
    """Yield ``length`` bytes from ``fh``; with ``corrupt`` every byte is flipped (same size)."""
    remaining = length
    while remaining > 0:
        data = fh.read(min(_CHUNK, remaining))
        if not data:
            break
        remaining -= len(data)
        if corrupt:
            data = data.translate(_FLIP)
        yield data
