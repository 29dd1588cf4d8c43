"""One `talktuah serve` per home, with its port bound before anything reads the home.

Two servers on one `TALKTUAH_HOME` share `state.db` and the engine pidfile: the second's
start-up reaps the first's engine as an orphan, and from then on each restarts the other's
engine. A server that only finds out at the end of its start-up that its port is taken has
already done that damage. So `talktuah serve` first binds its listening sockets (handed to
uvicorn as they are), then takes an exclusive `flock` on `<home>/serve.lock`, and only then
builds anything that touches the engine or the state.

The lock belongs to the open file, so the kernel drops it when the process ends, even on
SIGKILL: a stale `serve.lock` never blocks a start, and the file is never removed (removing
it would let two processes lock two different files). It holds the owner's pid and URL so
a refusal can name them. Both descriptors are close-on-exec: the engine, which outlives a
SIGKILLed server, must hold neither the port nor the lock.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import HomeInUseError, PortUnavailableError

LOCK_NAME = "serve.lock"
# How long a refusal waits for a just-started owner to write its pid and URL.
OWNER_RECORD_WAIT = 1.0


@dataclass(frozen=True)
class HomeOwner:
    """The `talktuah serve` process holding a home, as its lock file tells."""

    pid: int | None
    url: str | None

    def describe(self) -> str:
        pid = "pid unknown" if self.pid is None else f"pid {self.pid}"
        return f"{pid}, {self.url}" if self.url else pid


class HomeLock:
    """The exclusive lock on a home; held until `release()` or the end of the process."""

    def __init__(self, fd: int, path: Path) -> None:
        self._fd: int | None = fd
        self.path = path

    def record(self, url: str) -> None:
        """Write our pid and URL so a refused second start can say who holds the home."""
        assert self._fd is not None
        data = json.dumps({"pid": os.getpid(), "url": url}).encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the only descriptor drops the flock
            self._fd = None


def listen_url(host: str, port: int) -> str:
    """The URL a person on this machine opens for a server bound to `host`:`port`."""
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def bind_listeners(host: str, port: int, backlog: int = 2048) -> list[socket.socket]:
    """Listening sockets for every address `host` resolves to, as asyncio would bind them.

    They listen at once: a socket only bound (SO_REUSEADDR, which a restart needs to get past
    TIME_WAIT) would not stop a second server from binding the same port meanwhile.
    """
    try:
        infos = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise PortUnavailableError(
            f"Cannot listen on {host}:{port}: {exc.strerror}. Give an address of this machine "
            "with --host or TALKTUAH_HOST (127.0.0.1 for this machine only, 0.0.0.0 for all)."
        ) from exc
    listeners: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            listeners.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(backlog)
    except OSError as exc:
        for sock in listeners:
            sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortUnavailableError(
                f"Port {port} on {host} is already in use by another program. Start with "
                "--port N or set TALKTUAH_PORT to a free port."
            ) from exc
        raise PortUnavailableError(
            f"Cannot listen on {host}:{port}: {exc.strerror}. Choose another address or port "
            "with --host/--port (TALKTUAH_HOST, TALKTUAH_PORT); ports below 1024 need root."
        ) from exc
    return listeners


def lock_home(home: Path) -> HomeLock:
    """Take `home` for this process, or raise `HomeInUseError` naming the server holding it."""
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = home / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise _in_use(read_owner(path)) from None
    return HomeLock(fd, path)


def holder(home: Path) -> HomeOwner | None:
    """Who holds `home` now, or None; changes nothing in the home (a port-taken refusal
    calls it to tell "this home's server has the port" from "another program has it")."""
    path = home / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return read_owner(path)
    finally:
        os.close(fd)
    return None


def read_owner(path: Path) -> HomeOwner:
    """The pid and URL in a held lock file; the owner writes them just after locking, so
    an empty or half-written file is read again for up to `OWNER_RECORD_WAIT` seconds."""
    deadline = time.monotonic() + OWNER_RECORD_WAIT
    while True:
        try:
            record = json.loads(path.read_text())
            return HomeOwner(int(record["pid"]), str(record["url"]))
        except (OSError, ValueError, KeyError, TypeError):
            if time.monotonic() > deadline:
                return HomeOwner(None, None)
            time.sleep(0.05)


def ensure_free(home: Path) -> None:
    """Raise `HomeInUseError` when a server holds `home` (without taking it ourselves)."""
    owner = holder(home)
    if owner is not None:
        raise _in_use(owner)


def _in_use(owner: HomeOwner) -> HomeInUseError:
    return HomeInUseError(
        f"TalkTuah already runs with this home ({owner.describe()}). Use that server, stop it "
        "first, or give this one another TALKTUAH_HOME."
    )
