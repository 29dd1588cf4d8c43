"""`talktuah serve` and friends; CLI messages for our errors are decided here."""

from __future__ import annotations

from typing import Annotated, Any

import typer
import uvicorn
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from .. import __version__
from ..config import Settings
from ..errors import InsecureConfigError
from ..security import check_exposure, resolve_api_key, weakness
from .client import TalkTuahClient
from .keys import key_app
from .output import console, server_client

app = typer.Typer(
    name="talktuah",
    help="Self-hosted LLM server: model lifecycle API and OpenAI-compatible proxy.",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(key_app, name="key")


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

    from ..api import create_app
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
        log_level="info",
        timeout_graceful_shutdown=5,
    )


@app.command()
def pull(
    model_id: Annotated[str, typer.Argument(help="Hugging Face repo id, e.g. org/name")],
    revision: Annotated[str, typer.Option(help="Branch, tag or commit sha")] = "main",
    include: Annotated[list[str] | None, typer.Option(help="Only files matching")] = None,
    exclude: Annotated[list[str] | None, typer.Option(help="Skip files matching")] = None,
    activate: Annotated[bool, typer.Option(help="Make it the active model when done")] = False,
) -> None:
    """Download a model through the running server, showing its byte progress."""
    params: dict[str, Any] = {"model_id": model_id, "auto": "true", "revision": revision}
    if include:
        params["allow_patterns"] = include
    if exclude:
        params["ignore_patterns"] = exclude
    if activate:
        params["activate"] = "true"
    with server_client() as client:
        answer = client.request("POST", "/api/download-model", params=params).json()
        if answer["status"] == "complete" and answer.get("job_id") is None:
            console.print(f"{model_id} is already downloaded.")
            return
        final = _follow(client, answer)
    if final["status"] != "complete":
        console.print(f"[bold red]{final['status']}:[/] {final.get('error') or model_id}")
        raise typer.Exit(1)
    console.print(
        f"{model_id} downloaded ({final['bytes_total']} bytes, {final['files_total']} files)."
    )


def _follow(client: TalkTuahClient, job: dict[str, Any]) -> dict[str, Any]:
    """Render the job's SSE progress as a bar; return the last state the server sent."""
    columns = (
        TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
        TransferSpeedColumn(), TimeRemainingColumn(),
    )  # fmt: skip
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task(job["model_id"], total=job.get("bytes_total"))
        for event in client.events(f"/api/downloads/{job['job_id']}/events"):
            job = event
            bar.update(task, completed=event["bytes_done"], total=event["bytes_total"])
    return job


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
