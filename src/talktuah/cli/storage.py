"""Disk commands: `talktuah du` (where the bytes are), `talktuah gc` (reclaim orphans).

Both go through the API (`GET /api/storage`, `POST /api/storage/gc`), so the server that
knows which downloads are live decides what may go; model ids are never cut in the table.
"""

from __future__ import annotations

import typer

from ..sizes import format_bytes
from .output import id_table, out, say, server_client

storage_app = typer.Typer()


@storage_app.command("du")
def disk_usage() -> None:
    """Disk use of the models dir: per model, partial downloads, total and free."""
    with server_client() as client:
        body = client.request("GET", "/api/storage").json()
    table = id_table("model", rest=("size",))
    for model in body["models"]:
        table.add_row(model["model_id"], format_bytes(model["bytes"]))
    out.print(table)
    partials = body["partials"]
    if partials:
        live = sum(1 for p in partials if p["live"])
        say(
            f"Partial downloads: {format_bytes(body['partial_bytes'])} in {len(partials)} "
            f"file(s), {live} of a running download. `talktuah gc` removes the others once "
            "they are older than TALKTUAH_PARTIAL_GRACE."
        )
    say(
        f"Total {format_bytes(body['total_bytes'])} in {body['models_dir']}; "
        f"{format_bytes(body['free_bytes'])} free on its disk."
    )


@storage_app.command("gc")
def collect() -> None:
    """Remove what no download will use again: old partials, the library's leftovers,
    stale locks, blobs no model links to. Running downloads are never touched."""
    with server_client() as client:
        body = client.request("POST", "/api/storage/gc").json()
    if not body["removed"]:
        say("Nothing to reclaim.")
        return
    kinds: dict[str, int] = {}
    for item in body["removed"]:
        kinds[item["kind"]] = kinds.get(item["kind"], 0) + 1
    listed = ", ".join(f"{n} {kind.replace('_', ' ')}" for kind, n in sorted(kinds.items()))
    say(f"Reclaimed {format_bytes(body['bytes_reclaimed'])}: {listed}.")
