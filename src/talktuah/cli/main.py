"""`talktuah serve` and friends; CLI messages for our errors are decided here."""

from __future__ import annotations

from typing import Annotated, Any

import typer
import uvicorn

from .. import __version__
from ..config import Settings
from ..errors import InsecureConfigError
from ..logs import configure_logging
from ..security import check_exposure, resolve_api_key, weakness
from .chat import chat_app
from .keys import key_app
from .models import models_app
from .output import console

app = typer.Typer(
    name="talktuah",
    help="Self-hosted LLM server: model lifecycle API and OpenAI-compatible proxy.",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(key_app, name="key")
app.add_typer(models_app)
app.add_typer(chat_app)


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
        f"TalkTuah {__version__} on http://{settings.host}:{settings.port} "
        f"(home {settings.home}, models {settings.models_dir})"
    )
    uvicorn.run(
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


def _announce_key(settings: Settings, source: str, value: str) -> None:
    if source == "generated":
        console.print(
            f"Generated an API key and stored it in {settings.api_key_path} (mode 0600).\n"
            f"API key: [bold]{value}[/]\n"
            "It is shown only this once; send it as 'Authorization: Bearer <key>'."
        )
    elif source == "file":
        console.print(f"Using the API key stored in {settings.api_key_path}.")
    else:
        console.print("Using PROXY_API_KEY from the environment.")
        reason = weakness(value)
        if reason is not None:
            console.print(
                f"[yellow]warning:[/] PROXY_API_KEY is weak ({reason}); "
                "acceptable on loopback only."
            )
