"""`talktuah chat`: a streaming chat REPL against the served model."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from .output import console, out, server_client

chat_app = typer.Typer()


@chat_app.command()
def chat(
    model: Annotated[str | None, typer.Argument(help="Defaults to the served model")] = None,
    max_tokens: Annotated[int, typer.Option(help="Per answer")] = 256,
) -> None:
    """Chat with the served model; answers stream as they are generated. /exit quits."""
    with server_client() as client:
        if model is None:
            served = client.request("GET", "/v1/models").json()["data"]
            if not served:
                console.print("[bold red]error:[/] no model is served: `talktuah use MODEL`.")
                raise typer.Exit(1)
            model = str(served[0]["id"])
        console.print(f"Chatting with {model}. /exit to quit.")
        history: list[dict[str, Any]] = []
        while True:
            try:
                line = input("you> ")
            except EOFError:
                break
            if line.strip() in ("/exit", "/quit"):
                break
            if not line.strip():
                continue
            history.append({"role": "user", "content": line})
            body = {"model": model, "messages": history, "stream": True, "max_tokens": max_tokens}
            answer = ""
            out.print("assistant> ", end="")
            with client.http.stream("POST", "/v1/chat/completions", json=body) as response:
                if response.status_code >= 400:
                    response.read()
                    out.print()
                    console.print(f"[bold red]error:[/] {response.json().get('detail')}")
                    history.pop()
                    continue
                for raw in response.iter_lines():
                    if not raw.startswith("data:") or raw.strip() == "data: [DONE]":
                        continue
                    chunk = json.loads(raw[5:])
                    delta = (chunk.get("choices") or [{}])[0].get("delta", {}).get("content")
                    if delta:
                        answer += delta
                        out.print(delta, end="", markup=False, highlight=False)
            out.print()
            history.append({"role": "assistant", "content": answer})
