"""Model commands: pull, ls, rm, use, ps/status, load, unload, downloads — all through
the HTTP API.

They replace the seed's download_model.sh / delete_model.sh: one source of truth, the server.
Ids a next command needs (model ids, job ids) are never cut in a table: those columns do not
wrap, whatever the terminal width; free text (errors) folds instead.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from ..sizes import format_bytes, format_speed
from .engine_view import engine_lines, loaded_rows, use_failure_lines
from .output import console, fail, id_table, model_arg, out, say, server_client
from .pull import pull

models_app = typer.Typer()
models_app.command()(pull)

MODEL = typer.Argument(metavar="ORG/NAME", help="A downloaded model (id or Hub URL)")


@models_app.command("ls")
def list_models() -> None:
    """Downloaded models: size, revision, active, complete."""
    with server_client() as client:
        body = client.request("GET", "/api/models/local").json()
    table = id_table("model", rest=("size", "revision", "active", "complete"))
    for model in body["models"]:
        revision = model["revisions"][0] if model["revisions"] else {}
        refs = ",".join(revision.get("refs", []))
        commit = revision.get("commit_hash", "")[:8]
        table.add_row(
            model["model_id"], format_bytes(model["size_bytes"]),
            f"{commit} ({refs})" if refs else commit,
            "yes" if model["active"] else "", "yes" if model["complete"] else "no",
        )  # fmt: skip
    out.print(table)
    if not body["models"]:
        say("No models yet: `talktuah pull ORG/NAME`.")


@models_app.command("rm")
def remove(
    model_id: Annotated[str, MODEL],
    force: Annotated[
        bool, typer.Option("--force", metavar="", help="Even the active model (the engine stops)")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", metavar="", help="Do not ask")] = False,
) -> None:
    """Delete a downloaded model (asks first)."""
    model_id = model_arg(model_id).model_id
    with server_client() as client:
        models = client.request("GET", "/api/models/local").json()["models"]
        found = next((m for m in models if m["model_id"] == model_id), None)
        if found is None:
            fail(f"{model_id} is not downloaded. `talktuah ls` lists downloaded models.")
        if found["active"] and not force:
            fail(
                f"{model_id} is the active model: `talktuah rm {model_id} --force` deletes it "
                "anyway (the engine stops), or `talktuah use OTHER` first."
            )
        what = f"{model_id} ({format_bytes(found['size_bytes'])})"
        if found["active"]:
            what += ", the active model: the engine stops serving it"
        if not yes and not typer.confirm(f"Delete {what}?", default=False):
            say("Nothing deleted.")
            raise typer.Exit(1)
        body = client.request(
            "DELETE", "/api/delete-model", params={"model_id": model_id, "force": force}
        ).json()
    say(f"Deleted {model_id} ({format_bytes(body['size_bytes'])} freed).")
    if "no model is active" in body["message"]:
        say("No model is active now: `talktuah use ORG/NAME` serves another.")


@models_app.command()
def use(
    model_id: Annotated[str, MODEL],
    timeout: Annotated[
        float, typer.Option(metavar="SECONDS", help="How long to wait for it to load")
    ] = 900,
    force: Annotated[
        bool, typer.Option("--force", metavar="", help="Reload it even if it serves already")
    ] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", metavar="", help="Show the engine's log on a failure")
    ] = False,
) -> None:
    """Switch the served model and wait until it is ready (or failed)."""
    model_id = model_arg(model_id).model_id
    params: dict[str, Any] = {"model_id": model_id}
    if force:
        params["force"] = "true"
    with server_client() as client:
        answer = client.request("POST", "/api/switch-model", params=params).json()
        if answer.get("status") == "ready":
            say(f"{model_id} is already serving; `talktuah use {model_id} --force` reloads it.")
            return
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
                    fail(
                        f"{model_id} is still loading after {timeout:.0f} s; `talktuah ps` "
                        "shows how it goes."
                    )
                time.sleep(0.3)
    if status["status"] == "ready" and status.get("serving_model") == model_id:
        say(f"{model_id} is serving.")
        return
    console.print("[bold red]failed:[/] ", end="")
    for line in use_failure_lines(model_id, status, verbose=verbose):
        say(line)
    raise typer.Exit(1)


@models_app.command("ps")
def processes(
    verbose: Annotated[
        bool, typer.Option("--verbose", metavar="", help="Show the last failure's engine log")
    ] = False,
    dismiss: Annotated[
        bool, typer.Option("--dismiss", metavar="", help="Clear the last failure's notice")
    ] = False,
) -> None:
    """Engine state, the active model, the last failure, the loaded models (state, memory,
    expires in) and running downloads."""
    with server_client() as client:
        if dismiss:
            say(client.request("POST", "/api/engine/dismiss-failure").json()["message"])
        engine = client.request("GET", "/api/model-loading-status").json()
        loaded = client.request("GET", "/api/ps").json()["models"]
        jobs = client.request("GET", "/api/downloads").json()["downloads"]
    for line in engine_lines(engine, verbose=verbose):
        out.print(line, markup=False)
    if loaded:
        table = id_table("model", rest=("state", "engine", "memory", "expires in"))
        for row in loaded_rows(loaded, datetime.now(UTC)):
            table.add_row(*row)
        out.print(table)
    else:
        out.print("loaded  none: a request naming a model loads it, or `talktuah load MODEL`")
    live = [j for j in jobs if j["status"] in ("queued", "downloading")]
    if not live:
        out.print("downloads  none running")
    for job in live:
        out.print(
            f"download  {job['job_id']}  {job['model_id']}  {job['status']}  {job['progress']}%"
            f"  {format_bytes(job['bytes_done'])}/{format_bytes(job['bytes_total'])}",
            markup=False,
        )


models_app.command("status", help="Same as `ps`.")(processes)


@models_app.command()
def load(
    model_id: Annotated[str, MODEL],
    keep_alive: Annotated[
        str | None,
        typer.Option(
            "--keep-alive", metavar="DURATION", help="Idle time before it unloads: 5m, 30s, -1"
        ),
    ] = None,
    timeout: Annotated[
        float, typer.Option(metavar="SECONDS", help="How long to wait for it to load")
    ] = 900,
) -> None:
    """Load a model beside those loaded (the default model keeps serving) and wait for it."""
    model_id = model_arg(model_id).model_id
    params = {"model_id": model_id} | ({"keep_alive": keep_alive} if keep_alive else {})
    started = time.monotonic()
    seen_loading = False
    with server_client() as client:
        client.request("POST", "/api/load-model", params=params)
        while True:
            rows = {r["model"]: r for r in client.request("GET", "/api/ps").json()["models"]}
            row = rows.get(model_id)
            state = row["state"] if row is not None else "stopped"
            if row is not None and state == "ready":
                say(f"{model_id} is loaded ({row['engine']}).")
                return
            seen_loading = seen_loading or state == "loading"
            # the state from before the load (failed, restarting) may show for a moment
            settled = seen_loading or time.monotonic() - started > 2
            if settled and state in ("failed", "stopped"):
                error = (row or {}).get("error") or {}
                cause = error.get("cause") or (row or {}).get("message") or "it was unloaded"
                fail(f"{model_id} did not load: {cause}. `talktuah ps` shows the loaded models.")
            if time.monotonic() - started > timeout:
                fail(
                    f"{model_id} is still loading after {timeout:.0f} s; `talktuah ps` follows it."
                )
            time.sleep(0.2)


@models_app.command()
def unload(model_id: Annotated[str, MODEL]) -> None:
    """Stop a loaded model's engine now (the memory is free once it has stopped)."""
    model_id = model_arg(model_id).model_id
    with server_client() as client:
        client.request("POST", "/api/unload-model", params={"model_id": model_id})
    say(f"Unloading {model_id}; `talktuah ps` lists what stays loaded.")


@models_app.command("downloads")
def downloads(
    cancel: Annotated[str | None, typer.Option(metavar="JOB_ID", help="Cancel this job")] = None,
) -> None:
    """List download jobs, or cancel one."""
    with server_client() as client:
        if cancel is not None:
            job = client.request("DELETE", f"/api/downloads/{cancel}").json()
            say(f"Job {job['job_id']} ({job['model_id']}): {job['message']}")
            return
        jobs = client.request("GET", "/api/downloads").json()["downloads"]
    table = id_table("job", "model", rest=("status", "progress", "size", "speed", "error"))
    for job in jobs:
        speed = format_speed(job["speed_bps"]) if job.get("speed_bps") else ""
        table.add_row(
            job["job_id"], job["model_id"], job["status"], f"{job['progress']}%",
            format_bytes(job["bytes_total"]), speed, job.get("error") or "",
        )  # fmt: skip
    out.print(table)
