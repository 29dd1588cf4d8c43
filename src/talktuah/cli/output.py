"""Where CLI output goes and how a server error becomes a message and an exit code."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console

from ..config import Settings
from .client import ServerError, TalkTuahClient

console = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)


@contextmanager
def server_client() -> Iterator[TalkTuahClient]:
    """A client for the running server; server errors end the command with exit code 1."""
    client = TalkTuahClient(Settings())
    try:
        yield client
    except ServerError as exc:
        console.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(1) from exc
    finally:
        client.close()
