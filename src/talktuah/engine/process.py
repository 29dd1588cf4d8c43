"""A subprocess owned by TalkTuah: its own process group, a log file, a pidfile.

The engine runs in a new session so that stopping it reaches every child it forks (vLLM
starts workers; `transformers serve` runs uvicorn). The pidfile lets the next start of
TalkTuah find and end an engine that survived a SIGKILL of TalkTuah itself.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

logger = logging.getLogger(__name__)


class ManagedProcess:
    def __init__(self, workdir: Path, name: str = "engine") -> None:
        self.workdir = workdir
        self.log_path = workdir / f"{name}.log"
        self.pidfile = workdir / f"{name}.pid"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self, argv: list[str], env: dict[str, str]) -> None:
        self._private_workdir()
        with _open_private(self.log_path) as log:
            log.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} $ {' '.join(argv)}\n".encode())
            log.flush()
            self._proc = subprocess.Popen(
                argv,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=self.workdir,
            )
        record = {"pid": self._proc.pid, "argv": argv, "started": _start_time(self._proc.pid)}
        with _open_private(self.pidfile, append=False) as pidfile:
            pidfile.write(json.dumps(record).encode())
        logger.info("engine started: pid %d: %s", self._proc.pid, " ".join(argv))

    def _private_workdir(self) -> None:
        """Owner-only, like TALKTUAH_HOME: an engine's log can show prompts, paths and
        tracebacks; a folder made by an older TalkTuah (umask 022) is tightened."""
        self.workdir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.workdir.chmod(0o700)

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def returncode(self) -> int | None:
        return self._proc.poll() if self._proc is not None else None

    def stop(self, timeout: float, *, graceful: bool = True) -> None:
        """SIGTERM to the whole group, SIGKILL after `timeout` (at once unless `graceful`);
        then forget the pidfile."""
        proc, self._proc = self._proc, None
        if proc is not None:
            _terminate_group(proc.pid, timeout if graceful else None, wait=proc.wait)
        self.pidfile.unlink(missing_ok=True)

    def cleanup_orphan(self, timeout: float) -> bool:
        """End the process group a previous, killed TalkTuah left running. True if it did."""
        try:
            recorded = json.loads(self.pidfile.read_text())
            pid, started = int(recorded["pid"]), recorded["started"]
        except (OSError, ValueError, KeyError, TypeError):
            return False
        self.pidfile.unlink(missing_ok=True)
        if started is None or _start_time(pid) != started:
            return False  # long gone, and the pid may since belong to something else
        logger.warning("stopping engine pid %d left by an earlier TalkTuah", pid)
        _terminate_group(pid, timeout, wait=None)
        return True

    def log_tail(self, lines: int = 50) -> list[str]:
        try:
            with self.log_path.open("rb") as handle:
                handle.seek(0, os.SEEK_END)
                handle.seek(max(0, handle.tell() - 64 * 1024))
                text = handle.read().decode(errors="replace")
        except OSError:
            return []
        tail = deque((line for line in text.splitlines() if line.strip()), maxlen=lines)
        return list(tail)


def _open_private(path: Path, *, append: bool = True) -> BinaryIO:
    """Open `path` for writing as 0600: created so (never briefly world-readable under the
    umask), and an existing file with looser modes is tightened."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
    fd = os.open(path, flags, 0o600)
    os.fchmod(fd, 0o600)
    return os.fdopen(fd, "ab" if append else "wb")


def _start_time(pid: int) -> int | None:
    """The kernel's start time of `pid` (clock ticks since boot): a pid with the same start
    time is the same process, so a recycled pid is never killed by mistake."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[-1].split()[19])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return Path(f"/proc/{pid}").exists() and "Z" not in _state(pid)


def _state(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "X"
    return stat.rsplit(")", 1)[-1].split()[0]


def _terminate_group(pid: int, timeout: float | None, wait: Callable[..., object] | None) -> None:
    """SIGTERM, SIGKILL after `timeout`; only SIGKILL when `timeout` is None."""
    if timeout is not None:
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
    deadline = time.monotonic() + (timeout or 0)
    while time.monotonic() < deadline:
        if wait is not None:
            try:
                wait(timeout=0.1)
                break
            except subprocess.TimeoutExpired:
                continue
        elif not _alive(pid):
            break
        time.sleep(0.1)
    try:
        os.killpg(pid, signal.SIGKILL)  # whatever is left of the group, leader or children
    except ProcessLookupError:
        pass
    if wait is not None:
        wait()
