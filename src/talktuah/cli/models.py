"""Model commands: pull, ls, rm, use, ps/status, downloads — all through the HTTP API.

They replace the seed's download_model.sh / delete_model.sh: one source of truth, the server.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from .client import TalkTuahClient
from .output import console, out, server_client

models_app = typer.Typer()


def _size(size: int | None) -> str:
    value = float(size or 0)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TB"


@models_app.command()
def pull(
    model_id: Annotated[str, typer.Argument(help="Hugging Face repo id, e.g. org/name")],
    revision: Annotated[str, typer.Option(help="Branch, tag or commit sha")] = "main",
    include: Annotated[list[str] | None, typer.Option(help="Only files matching")] = None,
    exclude: Annotated[list[str] | None, typer.Option(help="Skip files matching")] = None,
    activate: Annotated[bool, typer.Option(help="Make it the active model when done")] = False,
    detach: Annotated[bool, typer.Option(help="Queue it and return at once")] = False,
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
        if detach:
            console.print(f"Queued {model_id} as job {answer['job_id']}.")
            out.print(answer["job_id"], highlight=False)
            return
        try:
            final = _follow(client, answer)
        except KeyboardInterrupt:
            _interrupted(client, answer["job_id"], model_id)
            return
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
        TransferSpeedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[files]}"),
    )  # fmt: skip
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task(job["model_id"], total=job.get("bytes_total"), files="")
        for event in client.events(f"/api/downloads/{job['job_id']}/events"):
            job = event
            files = f"{event['files_done']}/{event['files_total']} files"
            bar.update(task, completed=event["bytes_done"], total=event["bytes_total"], files=files)
    return job


def _interrupted(client: TalkTuahClient, job_id: str, model_id: str) -> None:
    """Ctrl-C: the download runs in the server, so ask whether to stop it there too."""
    console.print()
    if typer.confirm(f"Cancel the download of {model_id} on the server?", default=False):
        client.request("DELETE", f"/api/downloads/{job_id}")
        console.print(f"Cancelled job {job_id}.")
        raise typer.Exit(130)
    console.print(
        f"Left running as job {job_id}; follow it with `talktuah downloads` or "
        f"`talktuah downloads --cancel {job_id}`."
    )


@models_app.command("ls")
def list_models() -> None:
    """Downloaded models: size, revision, active, complete."""
    with server_client() as client:
        body = client.request("GET", "/api/models/local").json()
    table = Table("model", "size", "revision", "active", "complete")
    for model in body["models"]:
        revision = model["revisions"][0] if model["revisions"] else {}
        refs = ",".join(revision.get("refs", []))
        label = (
            f"{revision.get('commit_hash', '')[:8]} ({refs})"
            if refs
            else revision.get("commit_hash", "")[:8]
        )
        table.add_row(
            model["model_id"], _size(model["size_bytes"]), label,
            "yes" if model["active"] else "", "yes" if model["complete"] else "no",
        )  # fmt: skip
    out.print(table)
    if not body["models"]:
        console.print("No models yet: `talktuah pull ORG/NAME`.")


@models_app.command("rm")
def remove(
    model_id: Annotated[str, typer.Argument(help="A downloaded model")],
    force: Annotated[bool, typer.Option(help="Even if it is the active model")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask")] = False,
) -> None:
    """Delete a downloaded model (asks first)."""
    if not yes and not typer.confirm(f"Delete {model_id} from the models dir?", default=False):
        console.print("Nothing deleted.")
        raise typer.Exit(1)
    with server_client() as client:
        body = client.request(
            "DELETE", "/api/delete-model", params={"model_id": model_id, "force": force}
        ).json()
    console.print(body["message"])


@models_app.command()
def use(
    model_id: Annotated[str, typer.Argument(help="A downloaded model")],
    timeout: Annotated[float, typer.Option(help="Seconds to wait for it to load")] = 900,
) -> None:
    """Switch the served model and wait until it is ready (or failed)."""
    with server_client() as client:
        client.request("POST", "/api/switch-model", params={"model_id": model_id})
        deadline = time.monotonic() + timeout
        with console.status(f"Loading {model_id}...") as spinner:
            while True:
                status = client.request("GET", "/api/model-loading-status").json()
                if status["status"] == "loading" and status.get("loading"):
                    loading = status["loading"]
                    spinner.update(
                        f"Loading {model_id}: {loading['phase']} ({loading['elapsed_seconds']} s)"
                    )
                elif status["status"] in ("ready", "failed", "stopped"):
                    break
                if time.monotonic() > deadline:
                    console.print(f"[bold red]error:[/] {model_id} still loading after {timeout} s")
                    raise typer.Exit(1)
                time.sleep(0.3)
    if status["status"] == "ready" and status.get("serving_model") == model_id:
        console.print(f"{model_id} is serving.")
        return
    console.print(f"[bold red]failed:[/] {status.get('error') or status['message']}")
    for line in status.get("log_tail") or []:
        console.print(f"  {line}", highlight=False, markup=False)
    console.print(status["message"])
    raise typer.Exit(1)


@models_app.command("ps")
def processes() -> None:
    """Engine state, the active model and running downloads."""
    with server_client() as client:
        engine = client.request("GET", "/api/model-loading-status").json()
        jobs = client.request("GET", "/api/downloads").json()["downloads"]
    out.print(
        f"engine  {engine['engine']}: {engine['engine_state']}"
        + (f" (restarts {engine['restarts']})" if engine.get("restarts") else "")
    )
    out.print(f"active  {engine['current_model'] or '-'}")
    out.print(f"status  {engine['status']}: {engine['message']}")
    live = [j for j in jobs if j["status"] in ("queued", "downloading")]
    if not live:
        out.print("downloads  none running")
    for job in live:
        out.print(
            f"download  {job['job_id']}  {job['model_id']}  {job['status']}  {job['progress']}%"
            f"  {_size(job['bytes_done'])}/{_size(job['bytes_total'])}"
        )


models_app.command("status", help="Same as `ps`.")(processes)


@models_app.command("downloads")
def downloads(
    cancel: Annotated[str | None, typer.Option(help="Cancel this job id")] = None,
) -> None:
    """List download jobs, or cancel one."""
    with server_client() as client:
        if cancel is not None:
            job = client.request("DELETE", f"/api/downloads/{cancel}").json()
            console.print(f"Job {job['job_id']} ({job['model_id']}): {job['message']}")
            return
        jobs = client.request("GET", "/api/downloads").json()["downloads"]
    table = Table("job", "model", "status", "progress", "size", "speed", "error")
    for job in jobs:
        speed = f"{_size(int(job['speed_bps']))}/s" if job.get("speed_bps") else ""
        table.add_row(
            job["job_id"], job["model_id"], job["status"], f"{job['progress']}%",
            _size(job["bytes_total"]), speed, (job.get("error") or "")[:60],
        )  # fmt: skip
    out.print(table)
