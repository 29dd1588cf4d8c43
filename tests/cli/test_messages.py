"""CLI wording (issue 16): API errors read as CLI commands, ids survive 80 columns."""

from __future__ import annotations

from rich.console import Console

from talktuah.cli.client import ServerError
from talktuah.cli.errors import message_for, speak_cli
from talktuah.cli.output import id_table


def test_api_calls_in_messages_become_commands() -> None:
    assert speak_cli(
        "Model 'x/y' is not being served; TalkTuah serves 'org/a'. "
        "Switch with POST /api/switch-model?model_id=x/y, or ask for 'org/a'."
    ).endswith("Switch with `talktuah use x/y`, or ask for 'org/a'.")
    assert "`talktuah downloads --cancel ab12cd34ef56`" in speak_cli(
        "Cancel it first with DELETE /api/downloads/ab12cd34ef56, then delete the model."
    )
    assert "`talktuah ps`" in speak_cli("retry shortly (GET /api/model-loading-status shows")


def test_errors_are_told_apart_by_status_and_route() -> None:
    active = ServerError(
        400, "DELETE", "/api/delete-model",
        "org/b is the active model. Switch to another model first "
        "(POST /api/switch-model?model_id=...) or repeat the request with force=true.",
    )  # fmt: skip
    assert "`talktuah rm org/b --force`" in (message_for(active) or "")
    busy = ServerError(
        409, "DELETE", "/api/delete-model",
        "org/b is being downloaded (job 0123456789ab). Cancel it first with "
        "DELETE /api/downloads/0123456789ab, then delete the model.",
    )  # fmt: skip
    assert "`talktuah downloads --cancel 0123456789ab`" in (message_for(busy) or "")
    missing = ServerError(404, "POST", "/api/switch-model", "Model not found: org/none is not")
    assert "`talktuah pull org/none`" in (message_for(missing) or "")
    assert message_for(ValueError("a bug")) is None  # bugs still show their traceback


def test_ids_are_never_cut_at_80_columns() -> None:
    job_id, model = "0123456789ab", "some-organisation/Qwen2.5-Coder-32B-Instruct-GGUF"
    table = id_table("job", "model", rest=("status", "progress", "size", "speed", "error"))
    table.add_row(job_id, model, "error", "37%", "12.4 GiB", "3.1 MiB/s", "x " * 80)
    console = Console(width=80, record=True, highlight=False)
    console.print(table)
    lines = console.export_text().splitlines()
    assert any(job_id in line and model in line for line in lines), "\n".join(lines)
    assert max(len(line) for line in lines) <= 80
