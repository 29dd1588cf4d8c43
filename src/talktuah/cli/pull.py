"""`talktuah pull`: ask the server for a download and follow its byte progress.

The download runs in the server, not in this process: when the server stops or restarts
mid-download the job stays queued there and resumes when it runs again. So losing the
connection is not an error here: `pull` says so, naming the job, and re-attaches by itself
(with backoff, for a bounded time) once the server answers again.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TextColumn
from rich.text import Text

from ..sizes import format_bytes, format_speed
from .client import ServerError, ServerLostError, ServerUnreachableError, TalkTuahClient
from .output import console, fail, model_arg, out, say, server_client

#: Speed and ETA need this much history; the first samples of a transfer lie.
MIN_SAMPLE_SECONDS = 1.0
REATTACH_BACKOFF_MAX = 5.0
LIVE = ("queued", "downloading")


def pull(
    model_id: Annotated[
        str, typer.Argument(metavar="ORG/NAME", help="Hugging Face repo id, or its Hub URL")
    ],
    revision: Annotated[
        str | None, typer.Option(metavar="REV", help="Branch, tag or commit (default: main)")
    ] = None,
    include: Annotated[
        list[str] | None, typer.Option(metavar="GLOB", help="Only files matching")
    ] = None,
    exclude: Annotated[
        list[str] | None, typer.Option(metavar="GLOB", help="Skip files matching")
    ] = None,
    activate: Annotated[
        bool, typer.Option("--activate", metavar="", help="Serve it when done")
    ] = False,
    detach: Annotated[
        bool, typer.Option("--detach", metavar="", help="Queue it and return at once")
    ] = False,
    reattach_timeout: Annotated[
        float,
        typer.Option(metavar="SECONDS", help="How long to wait for a server that went away"),
    ] = 300,
) -> None:
    """Download a model through the running server, showing its byte progress."""
    ref = model_arg(model_id)
    model_id = ref.model_id
    if revision is not None and ref.revision not in (None, revision):
        fail(f"The URL names revision {ref.revision} but --revision is {revision}; give one.")
    params: dict[str, Any] = {
        "model_id": model_id, "auto": "true", "revision": revision or ref.revision or "main",
    }  # fmt: skip
    if include:
        params["allow_patterns"] = include
    if exclude:
        params["ignore_patterns"] = exclude
    if activate:
        params["activate"] = "true"
    with server_client() as client:
        answer = client.request("POST", "/api/download-model", params=params).json()
        if answer["status"] == "complete" and answer.get("job_id") is None:
            say(f"{model_id} is already downloaded.")
            return
        if detach:
            say(f"Queued {model_id} as job {answer['job_id']}.")
            out.print(answer["job_id"])
            return
        try:
            final = _follow(client, answer, reattach_timeout)
        except KeyboardInterrupt:
            _interrupted(client, answer["job_id"], model_id)
            return
    if final["status"] != "complete":
        fail(
            f"The download of {model_id} (job {final['job_id']}) ended {final['status']}: "
            f"{final.get('error') or 'no reason given'}. `talktuah pull {model_id}` tries again."
        )
    say(
        f"{model_id} downloaded ({format_bytes(final['bytes_total'])}, "
        f"{final['files_total']} files)."
    )


class _BytesColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        total = "?" if task.total is None else format_bytes(task.total)
        return Text(f"{format_bytes(task.completed)}/{total}")


def _sampled(task: Task) -> float | None:
    """The speed once MIN_SAMPLE_SECONDS of samples exist, else None (nothing shown)."""
    since = task.fields.get("since")
    if since is None or task.get_time() - since < MIN_SAMPLE_SECONDS:
        return None
    return task.speed or None


class _SpeedColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = _sampled(task)
        return Text("" if speed is None else format_speed(speed))


class _EtaColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = _sampled(task)
        if speed is None or task.total is None:
            return Text("")
        seconds = int((task.total - task.completed) / speed)
        return Text(f"ETA {seconds // 60}:{seconds % 60:02d}")


def _follow(client: TalkTuahClient, job: dict[str, Any], reattach_timeout: float) -> dict[str, Any]:
    """Render the job's SSE progress as a bar, re-attaching when the server comes back;
    return the last state the server sent."""
    job_id, model_id = job["job_id"], job["model_id"]
    columns = (
        TextColumn("{task.description}"), BarColumn(), _BytesColumn(), _SpeedColumn(),
        _EtaColumn(), TextColumn("{task.fields[files]}"),
    )  # fmt: skip
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task(model_id, total=job.get("bytes_total"), files="", since=None)
        while True:
            try:
                for event in client.events(f"/api/downloads/{job_id}/events"):
                    job = event
                    since = bar.tasks[task].fields["since"]
                    if since is None and event["bytes_done"]:
                        since = bar.get_time()  # speed counts from the first bytes
                    bar.update(
                        task, completed=event["bytes_done"], total=event["bytes_total"],
                        files=f"{event['files_done']}/{event['files_total']} files", since=since,
                    )  # fmt: skip
                if job["status"] not in LIVE:
                    return job
                reason = "it closed the progress stream"  # a graceful stop ends the stream
            except (ServerLostError, ServerUnreachableError) as exc:
                reason = exc.reason
            job = _reattach(client, job_id, model_id, reason, reattach_timeout)
            # A fresh start for the speed samples: bytes moved while away are not a speed.
            files = f"{job['files_done']}/{job['files_total']} files"
            bar.reset(  # reset replaces every field
                task, completed=job["bytes_done"], total=job["bytes_total"], files=files, since=None
            )


def _reattach(
    client: TalkTuahClient, job_id: str, model_id: str, reason: str, timeout: float
) -> dict[str, Any]:
    """Wait, with backoff, until the server answers for the job again; fail after `timeout`."""
    later = f"`talktuah pull {model_id}` re-attaches"
    say(
        f"Lost the server at {client.base_url} ({reason}). The download of {model_id} "
        f"(job {job_id}) continues on the server when it runs again; re-attaching by itself "
        f"for up to {timeout:.0f} s (Ctrl-C stops waiting; {later} later)."
    )
    deadline = time.monotonic() + timeout
    delay = 0.5
    try:
        while True:
            try:
                job: dict[str, Any] = client.request("GET", f"/api/downloads/{job_id}").json()
                say(f"Re-attached to job {job_id}: {job['status']}.")
                return job
            except (ServerLostError, ServerUnreachableError):
                pass
            except ServerError as exc:
                if exc.status not in (502, 503, 504):  # a proxy in front, still starting
                    raise
            left = deadline - time.monotonic()
            if left <= 0:
                fail(
                    f"TalkTuah at {client.base_url} still does not answer after {timeout:.0f} s. "
                    f"The download of {model_id} (job {job_id}) continues when it runs again: "
                    f"start it with `talktuah serve`; {later}."
                )
            time.sleep(min(delay, left))
            delay = min(delay * 2, REATTACH_BACKOFF_MAX)
    except KeyboardInterrupt:
        fail(f"Stopped waiting for the server; job {job_id} resumes when it runs: {later}.", 130)


def _interrupted(client: TalkTuahClient, job_id: str, model_id: str) -> None:
    """Ctrl-C: the download runs in the server, so ask whether to stop it there too."""
    console.print()
    if typer.confirm(f"Cancel the download of {model_id} on the server?", default=False):
        client.request("DELETE", f"/api/downloads/{job_id}")
        say(f"Cancelled job {job_id}.")
        raise typer.Exit(130)
    say(
        f"Left running as job {job_id}; `talktuah pull {model_id}` follows it again, "
        f"`talktuah downloads --cancel {job_id}` stops it."
    )
