"""Run the CLI under a pseudo-terminal, as a person does, and read what they would see.

Pipes are not enough for the CLI's interactive paths: rich draws progress bars only on a
terminal, and Ctrl-C is a byte (0x03) that the terminal turns into SIGINT for the
foreground process. The child gets its own session with the pty as controlling terminal.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import signal
import struct
import subprocess
import sys
import termios
import threading
import time

from ..support.eventually import eventually

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r")


def interruptible() -> None:  # runs in the child, before exec
    """Ctrl-C's SIGINT as a shell at a terminal leaves it: a suite started in the background
    (`nohup ... &`) ignores SIGINT, children inherit that, and Python then installs no
    KeyboardInterrupt handler, so every Ctrl-C test would fail for the runner's reason."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _controlling_tty() -> None:  # runs in the child, before exec
    interruptible()
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class Terminal:
    """`talktuah ARGS` on an 80x24 pty; `expect` waits for text, `press` types keys."""

    def __init__(self, *args: str, env: dict[str, str], columns: int = 80) -> None:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
        self._master = master
        self._buffer = bytearray()
        self._lock = threading.Lock()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "talktuah", *args],
            stdin=slave, stdout=slave, stderr=slave, close_fds=True,
            env=env | {"COLUMNS": str(columns), "TERM": "xterm"},
            preexec_fn=_controlling_tty,  # noqa: PLW1509 - the pty must be the child's tty
        )  # fmt: skip
        os.close(slave)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self._master, 4096)
            except OSError:
                return
            if not data:
                return
            with self._lock:
                self._buffer.extend(data)

    def text(self) -> str:
        """Everything shown so far, without colours and cursor moves."""
        with self._lock:
            raw = self._buffer.decode(errors="replace")
        return _ANSI.sub("", raw)

    def expect(self, needle: str, timeout: float = 30, after: int = 0) -> int:
        """Wait until `needle` appears after offset `after`; return the offset past it."""
        exited: list[float] = []  # when the process was first seen gone

        def find() -> int:
            at = self.text().find(needle, after)
            if at < 0 and self.proc.poll() is not None:
                exited[:] = exited or [time.monotonic()]
                # An exited process's last output may still be on its way, for 0.2 s.
                assert time.monotonic() - exited[0] < 0.2, (
                    f"{needle!r} never shown before the process exited; the screen:\n{self.text()}"
                )
            return at

        at = eventually(
            find, lambda at: at >= 0, timeout=timeout,
            what=lambda: f"{needle!r} shown; the screen:\n{self.text()}",
        )  # fmt: skip
        return at + len(needle)

    def press(self, keys: str) -> None:
        os.write(self._master, keys.encode())

    def wait(self, timeout: float = 30) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            self.close()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._reader.join(2)
        try:
            os.close(self._master)
        except OSError:
            pass
