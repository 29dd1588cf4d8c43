"""Where CLI output goes and how a failure becomes one line and an exit code.

Messages go to stderr, results (ids, keys, tables) to stdout so they can be piped. Both
consoles leave highlighting off: rich colours digits, and a model id such as
`Qwen2.5-0.5B` must read as one name, not as numbers.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..config import Settings
from ..errors import InvalidModelIdError
from ..model_ref import ModelRef, parse_model_ref
from .client import ServerError, ServerLostError, ServerUnreachableError, TalkTuahClient
from .errors import message_for

console = Console(stderr=True, soft_wrap=True, highlight=False)
out = Console(soft_wrap=True, highlight=False)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print `error: message` (the message as plain text, never as markup) and exit."""
    console.print(Text("error: ", style="bold red") + Text(message))
    raise typer.Exit(code)


def say(message: str) -> None:
    """A message that may carry server text: printed as is, never read as rich markup."""
    console.print(Text(message))


def id_table(*ids: str, rest: tuple[str, ...]) -> Table:
    """A table whose id columns never wrap or truncate, and whose other columns fold."""
    table = Table()
    for name in ids:
        table.add_column(name, no_wrap=True, min_width=len(name))
    for name in rest:
        table.add_column(name, overflow="fold")
    return table


def model_arg(text: str) -> ModelRef:
    """A model argument: `org/name` or a pasted Hub URL; a URL we cannot read ends here."""
    try:
        return parse_model_ref(text)
    except InvalidModelIdError as exc:
        fail(str(exc))


@contextmanager
def server_client() -> Iterator[TalkTuahClient]:
    """A client for the running server; an expected failure ends the command with one line."""
    client = TalkTuahClient(Settings())
    try:
        yield client
    except (ServerError, ServerLostError, ServerUnreachableError) as exc:
        fail(message_for(exc) or str(exc))
    finally:
        client.close()


class CliApp(typer.Typer):
    """The `talktuah` command: an expected failure raised outside `server_client()` (a
    helper, a prompt) still ends in one line, never in typer's page-long traceback."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(*args, **kwargs)
        except (ServerError, ServerLostError, ServerUnreachableError) as exc:
            console.print(Text("error: ", style="bold red") + Text(message_for(exc) or str(exc)))
            sys.exit(1)
