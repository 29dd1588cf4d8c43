"""`talktuah key ...`: API keys with scopes, managed through the server (admin key needed)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from ..config import Settings
from .client import TalkTuahClient, api_key_for
from .output import fail, id_table, out, say, server_client

key_app = typer.Typer(
    help="Show or rotate the admin key; create, list and revoke scoped keys.",
    invoke_without_command=True,
)


@key_app.callback()
def key(
    ctx: typer.Context,
    rotate: Annotated[
        bool, typer.Option("--rotate", metavar="", help="Replace the generated admin key")
    ] = False,
) -> None:
    """Without a subcommand: print the admin key this CLI uses (or rotate it)."""
    if ctx.invoked_subcommand is not None:
        return
    settings = Settings()
    if rotate:
        with server_client() as client:
            body = client.request("POST", "/api/keys/rotate-admin").json()
        say(body["message"])
        out.print(body["key"])
        return
    value = api_key_for(settings)
    if value is None:
        fail(
            f"No key: PROXY_API_KEY is unset and {settings.api_key_path} does not exist yet "
            "(`talktuah serve` creates it)."
        )
    source = "PROXY_API_KEY" if settings.proxy_api_key else str(settings.api_key_path)
    say(f"Admin key from {source}:")
    out.print(value)


@key_app.command("create")
def create(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Who uses it, e.g. n8n")],
    scope: Annotated[
        list[str],
        typer.Option(
            "--scope", "-s", metavar="SCOPE", help="infer, models:read, models:write, admin"
        ),
    ],
    expires_in_days: Annotated[
        float | None, typer.Option(metavar="DAYS", help="Unset: never")
    ] = None,
    rate_limit: Annotated[str | None, typer.Option(metavar="RATE", help="e.g. 100/minute")] = None,
    proxy_rate_limit: Annotated[
        str | None, typer.Option(metavar="RATE", help="e.g. 30/minute")
    ] = None,
    max_streams: Annotated[
        int | None, typer.Option(metavar="N", help="Concurrent proxy streams")
    ] = None,
) -> None:
    """Create a key; it is printed once, on standard output."""
    body: dict[str, Any] = {"name": name, "scopes": scope, "expires_in_days": expires_in_days,
                            "rate_limit": rate_limit, "proxy_rate_limit": proxy_rate_limit,
                            "max_streams": max_streams}  # fmt: skip
    with server_client() as client:
        key = client.request("POST", "/api/keys", json=body).json()
    say(
        f"Created key {key['id']} ({key['name']}, scopes {', '.join(key['scopes'])}). "
        "Store it now: it is not shown again."
    )
    out.print(key["key"])


@key_app.command("ls")
def list_keys() -> None:
    """List keys (never their secrets)."""
    with server_client() as client:
        keys = client.request("GET", "/api/keys").json()["keys"]
    table = id_table("id", "name", rest=("prefix", "scopes", "status", "expires", "last used"))
    for key in keys:
        table.add_row(
            key["id"], key["name"], key["prefix"] + "…", ", ".join(key["scopes"]),
            key["status"], key["expires_at"] or "never", key["last_used_at"] or "never",
        )  # fmt: skip
    out.print(table)


@key_app.command("revoke")
def revoke(
    key: Annotated[str, typer.Argument(metavar="ID_OR_NAME", help="From `talktuah key ls`")],
) -> None:
    """Revoke a key, by id or by a name only one key has: it stops working at once."""
    with server_client() as client:
        key_id = _key_id(client, key)
        revoked = client.request("DELETE", f"/api/keys/{key_id}").json()
    say(f"Revoked {revoked['id']} ({revoked['name']}).")


def _key_id(client: TalkTuahClient, given: str) -> str:
    """The id of the key `given` names: an id as is, else the one key with that name."""
    keys = client.request("GET", "/api/keys").json()["keys"]
    if any(k["id"] == given for k in keys):
        return given
    named = [k for k in keys if k["name"] == given and k["status"] == "active"]
    named = named or [k for k in keys if k["name"] == given]
    if len(named) == 1:
        return str(named[0]["id"])
    if not named:
        fail(f"No API key with id or name {given}. `talktuah key ls` lists them.")
    lines = "\n".join(f"  {k['id']}  {k['name']}  {k['status']}" for k in named)
    fail(f"{len(named)} keys are named {given}; revoke one by id:\n{lines}")
