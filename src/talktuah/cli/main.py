"""`talktuah serve` and friends; CLI messages for our errors are decided here."""

from __future__ import annotations

from typing import Annotated, Any

import typer
import uvicorn
from rich.markup import escape

from .. import __version__
from ..config import Settings
from ..errors import HomeInUseError, InsecureConfigError, PortUnavailableError
from ..home_lock import bind_listeners, ensure_free, listen_url, lock_home
from ..logs import configure_logging
from ..security import check_exposure, resolve_api_key, weakness
from .chat import chat_app
from .keys import key_app
from .models import models_app
from .output import CliApp, console
from .storage import storage_app

app = CliApp(
    name="talktuah",
    help="Self-hosted LLM server: model lifecycle API and OpenAI-compatible proxy.",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(key_app, name="key")
app.add_typer(models_app)
app.add_typer(chat_app)
app.add_typer(storage_app)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(__version__)
        raise typer.Exit()


@app.callback()
def _options(
    _version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version, exit"
        ),
    ] = False,
) -> None:
    """Self-hosted LLM server: model lifecycle API and OpenAI-compatible proxy."""


@app.command()
def version() -> None:
    """Print the installed version."""
    typer.echo(__version__)


@app.command()
def serve(
    host: Annotated[
        str | None, typer.Option(help="Address to bind (TALKTUAH_HOST, default 127.0.0.1)")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port (TALKTUAH_PORT, default 8787)")] = None,
) -> None:
    """Start the API server."""
    overrides: dict[str, Any] = {}
    if host is not None:
        overrides["host"] = host
    if port is not None:
        overrides["port"] = port
    settings = Settings(**overrides)
    url = listen_url(settings.host, settings.port)
    # Port and home first: a second server that got further would reap this home's engine
    # as an orphan and write its state.db (home_lock.py). Nothing is touched on a refusal.
    try:
        try:
            listeners = bind_listeners(settings.host, settings.port)
        except PortUnavailableError:
            ensure_free(settings.home)  # "this home's server has it" says more than "taken"
            raise
        try:
            home_lock = lock_home(settings.home)
        except HomeInUseError:
            for sock in listeners:
                sock.close()
            raise
    except (HomeInUseError, PortUnavailableError) as exc:
        console.print(f"[bold red]error:[/] {escape(str(exc))}")
        raise typer.Exit(1) from exc
    home_lock.record(url)
    key = resolve_api_key(settings)
    try:
        check_exposure(settings, key)
    except InsecureConfigError as exc:
        console.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(2) from exc
    _announce_key(settings, key.source, key.value)
    configure_logging(settings.log_format, settings.log_level, [key.value, settings.hf_token or ""])

    from ..api import create_app
    from ..api.protocol import BoundedHttpToolsProtocol
    from ..services import Services

    services = Services.build(settings, key)
    console.print(
        f"TalkTuah {__version__} on {escape(url)} "
        f"(home {settings.home}, models {settings.models_dir})\n"
        f"Dashboard: {escape(url)}/ui/\n"
        "Next: `talktuah pull ORG/NAME --activate` downloads a Hugging Face model and serves "
        "it; `talktuah chat` talks to it."
    )
    config = uvicorn.Config(
        create_app(services),
        host=settings.host,
        port=settings.port,
        log_config=None,  # configure_logging already routes uvicorn's loggers
        log_level=settings.log_level,
        timeout_graceful_shutdown=10,
        # Idle keep-alive connections and incomplete request heads are closed after the
        # same time (api/protocol.py: uvicorn alone holds a half-sent head forever).
        http=BoundedHttpToolsProtocol,
        timeout_keep_alive=settings.idle_timeout,
        access_log=False,  # RequestContextMiddleware writes it, once the response has ended
    )
    server = uvicorn.Server(config)
    try:
        server.run(sockets=listeners)  # the sockets bound above; uvicorn closes them
    except KeyboardInterrupt:
        pass  # as uvicorn.run: Ctrl-C during start-up is a stop, not a traceback
    finally:
        home_lock.release()
    if not server.started:
        raise typer.Exit(3)  # uvicorn's STARTUP_FAILURE, as uvicorn.run exits


def _announce_key(settings: Settings, source: str, value: str) -> None:
    if source == "generated":
        console.print(
            f"Generated an API key and stored it in {settings.api_key_path} (mode 0600).\n"
            f"API key: [bold]{value}[/]\n"
            "Send it as 'Authorization: Bearer <key>'; `talktuah key` shows it again."
        )
    elif source == "file":
        console.print(
            f"Using the API key stored in {settings.api_key_path}; `talktuah key` shows it."
        )
    else:
        console.print("Using PROXY_API_KEY from the environment.")
        reason = weakness(value)
        if reason is not None:
            console.print(
                f"[yellow]warning:[/] PROXY_API_KEY is weak ({reason}); "
                "acceptable on loopback only."
            )
