"""`talktuah key ...`: API keys with scopes, managed through the server (admin key needed)."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from ..config import Settings
from .client import api_key_for
from .output import console, out, server_client

key_app = typer.Typer(
    help="Show or rotate the admin key; create, list and revoke scoped keys.",
    invoke_without_command=True,
)


@key_app.callback()
def key(
    ctx: typer.Context,
    rotate: Annotated[bool, typer.Option(help="Replace the generated admin key")] = False,
) -> None:
    """Without a subcommand: print the admin key this CLI uses (or rotate it)."""
    if ctx.invoked_subcommand is not None:
        return
    settings = Settings()
    if rotate:
        with server_client() as client:
            body = client.request("POST", "/api/keys/rotate-admin").json()
        console.print(body["message"])
        out.print(body["key"], highlight=False)
        return
    value = api_key_for(settings)
    if value is None:
        console.print(
            f"[bold red]error:[/] no key: PROXY_API_KEY is unset and {settings.api_key_path} "
            "does not exist yet (`talktuah serve` creates it)."
        )
        raise typer.Exit(1)
    source = "PROXY_API_KEY" if settings.proxy_api_key else str(settings.api_key_path)
    console.print(f"Admin key from {source}:")
    out.print(value, highlight=False)


@key_app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="Who uses it, e.g. n8n")],
    scope: Annotated[
        list[str], typer.Option("--scope", "-s", help="infer, models:read, models:write, admin")
    ],
    expires_in_days: Annotated[float | None, typer.Option(help="Unset: never")] = None,
    rate_limit: Annotated[str | None, typer.Option(help="e.g. 100/minute")] = None,
    proxy_rate_limit: Annotated[str | None, typer.Option(help="e.g. 30/minute")] = None,
    max_streams: Annotated[int | None, typer.Option(help="Concurrent proxy streams")] = None,
) -> None:
    """Create a key; it is printed once, on standard output."""
    body: dict[str, Any] = {"name": name, "scopes": scope, "expires_in_days": expires_in_days,
                            "rate_limit": rate_limit, "proxy_rate_limit": proxy_rate_limit,
                            "max_streams": max_streams}  # fmt: skip
    with server_client() as client:
        key = client.request("POST", "/api/keys", json=body).json()
    console.print(
        f"Created key {key['id']} ({key['name']}, scopes {', '.join(key['scopes'])}). "
        "Store it now: it is not shown again."
    )
    out.print(key["key"], highlight=False)


@key_app.command("ls")
def list_keys() -> None:
    """List keys (never their secrets)."""
    with server_client() as client:
        keys = client.request("GET", "/api/keys").json()["keys"]
    table = Table("id", "name", "prefix", "scopes", "status", "expires", "last used")
    for key in keys:
        table.add_row(
            key["id"], key["name"], key["prefix"] + "…", ", ".join(key["scopes"]),
            key["status"], key["expires_at"] or "never", key["last_used_at"] or "never",
        )  # fmt: skip
    out.print(table)


@key_app.command("revoke")
def revoke(key_id: Annotated[str, typer.Argument(help="The id from `talktuah key ls`")]) -> None:
    """Revoke a key: it stops working at once."""
    with server_client() as client:
        key = client.request("DELETE", f"/api/keys/{key_id}").json()
    console.print(f"Revoked {key['id']} ({key['name']}).")
