"""Port selection for engines TalkTuah launches."""

from __future__ import annotations

import socket


def pick_port(host: str, configured: int) -> int:
    """The configured port, or (0) one the OS says is free now on `host`."""
    if configured:
        return configured
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])
