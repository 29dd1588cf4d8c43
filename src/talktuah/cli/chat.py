"""`talktuah chat`: a streaming chat REPL against the served model.

Lines that start with `/` are commands (/help, /clear, /exit), never prompts. Ctrl-C while
an answer streams stops that answer and keeps the conversation; Ctrl-D (or /exit) quits.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import httpx
import typer

from .client import ServerError, TalkTuahClient
from .errors import speak_cli
from .output import console, fail, out, say, server_client

chat_app = typer.Typer()

HELP = (
    "/help     this list\n"
    "/clear    forget the conversation so far\n"
    "/exit     quit (also /quit, or Ctrl-D)\n"
    "Ctrl-C    stop the answer being written"
)


@chat_app.command()
def chat(
    model: Annotated[
        str | None, typer.Argument(metavar="[ORG/NAME]", help="Defaults to the served model")
    ] = None,
    max_tokens: Annotated[int, typer.Option(metavar="N", help="Per answer")] = 256,
) -> None:
    """Chat with the served model; answers stream as they are generated. /help lists commands."""
    with server_client() as client:
        model = model or _served_model(client)
        say(f"Chatting with {model}. /help lists commands; Ctrl-C stops an answer.")
        history: list[dict[str, Any]] = []
        while True:
            try:
                line = input("you> ")
            except EOFError:
                out.print()
                break
            except KeyboardInterrupt:
                out.print()
                say("(/exit or Ctrl-D quits)")
                continue
            text = line.strip()
            if not text:
                continue
            if text.startswith("/"):
                if _command(text, history):
                    continue
                break
            history.append({"role": "user", "content": line})
            answer = _answer(client, model, history, max_tokens)
            if answer is None:
                history.pop()
            else:
                history.append({"role": "assistant", "content": answer})


def _command(text: str, history: list[dict[str, Any]]) -> bool:
    """Run a /command; False means quit."""
    name = text.split()[0].lower()
    if name in ("/exit", "/quit"):
        return False
    if name == "/help":
        say(HELP)
    elif name == "/clear":
        history.clear()
        say("Conversation cleared.")
    else:
        say(f"Unknown command {name}; /help lists them.")
    return True


def _served_model(client: TalkTuahClient) -> str:
    """The model the engine serves, or the end of the command with the way to serve one."""
    try:
        served = client.request("GET", "/v1/models").json()["data"]
    except ServerError as exc:
        if exc.status in (502, 503):
            fail(
                f"No model is serving ({speak_cli(exc.detail)}). `talktuah use ORG/NAME` serves "
                "a downloaded one; `talktuah ls` lists them."
            )
        raise
    if not served:
        fail("No model is serving: `talktuah use ORG/NAME` (`talktuah ls` lists downloaded ones).")
    return str(served[0]["id"])


def _answer(
    client: TalkTuahClient, model: str, history: list[dict[str, Any]], max_tokens: int
) -> str | None:
    """Stream one answer; the text so far when Ctrl-C stops it, None when it was refused."""
    body = {"model": model, "messages": history, "stream": True, "max_tokens": max_tokens}
    answer = ""
    out.print("assistant> ", end="")
    try:
        with client.stream(
            "POST", "/v1/chat/completions", json=body, timeout=httpx.Timeout(60, read=None)
        ) as lines:
            for raw in lines:
                if not raw.startswith("data:") or raw.strip() == "data: [DONE]":
                    continue
                chunk = json.loads(raw[5:])
                delta = (chunk.get("choices") or [{}])[0].get("delta", {}).get("content")
                if delta:
                    answer += delta
                    out.print(delta, end="", markup=False)
    except KeyboardInterrupt:
        out.print()
        say("(answer stopped)")
        return answer or None
    except ServerError as exc:
        out.print()
        console.print("[bold red]error:[/] ", end="")
        say(speak_cli(exc.detail))
        return None
    out.print()
    return answer
