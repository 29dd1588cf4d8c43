"""How `use` and `ps` show the engine: what serves now first, the last failure apart, and
a failure's cause before its frames (issue 16); and the loaded models of the engine pool
(`GET /api/ps`, issue 18) as `ps`'s table rows.

A rolled-back switch used to print `status  failed` while the previous model served, and a
load failure printed 30 lines of traceback before the line that says why. Pure functions of
/api/model-loading-status, so the wording has unit tests without a server.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ..sizes import format_bytes

_HOW = {
    "crash": "the engine serving {model} died",
    "restart": "restarting {model} failed",
    "switch": "{model} did not load",
    "load": "{model} did not load",
}


def failure_headline(failure: dict[str, Any]) -> str:
    return _HOW.get(str(failure.get("kind")), _HOW["load"]).format(model=failure["model"])


def failure_lines(failure: dict[str, Any], *, verbose: bool, command: str) -> list[str]:
    """`Cause: …` and a hint; the engine's log only with `--verbose` (`command` names it)."""
    lines = [f"Cause: {failure.get('cause') or failure.get('message')}"]
    if failure.get("hint"):
        lines.append(f"Hint: {failure['hint']}")
    tail = failure.get("log_tail") or []
    if verbose:
        lines.append("Engine log (last lines):")
        lines += [f"  {line}" for line in tail] or ["  (the engine wrote nothing)"]
    elif tail:
        lines.append(f"`{command} --verbose` shows the engine log.")
    return lines


def engine_lines(engine: dict[str, Any], *, verbose: bool = False) -> list[str]:
    """`talktuah ps`: the engine's own state (never `failed` while a model serves)."""
    state = engine["engine_state"]
    restarts = f" (restarts {engine['restarts']})" if engine.get("restarts") else ""
    lines = [
        f"engine  {engine['engine']}: {state}{restarts}",
        f"serving  {engine.get('serving_model') or 'nothing'}",
        f"active  {engine.get('current_model') or 'none: `talktuah use ORG/NAME` serves one'}",
    ]
    loading = engine.get("loading")
    if loading:
        lines.append(
            f"loading  {loading['model']}: {loading['phase']} ({loading['elapsed_seconds']} s)"
        )
    restart = engine.get("restart_pending")
    if restart:
        lines.append(
            f"restart  {restart['model']} in {restart['seconds_left']:.0f} s (attempt "
            f"{restart['attempt']} of {restart['limit']}); `talktuah use ORG/NAME` replaces it"
        )
    lines.append(f"status  {state}: {engine['message']}")
    failure = engine.get("last_failure")
    if failure:
        lines.append(f"failure  {failure_headline(failure)} ({failure['at']})")
        lines += [
            f"  {line}" for line in failure_lines(failure, verbose=verbose, command="talktuah ps")
        ]
        lines.append("  `talktuah ps --dismiss` clears this notice.")
    return lines


def use_failure_lines(model_id: str, status: dict[str, Any], *, verbose: bool) -> list[str]:
    """`talktuah use` did not end serving `model_id`: why first, then what serves."""
    failure = status.get("last_failure")
    serving = status.get("serving_model")
    still = f"; {serving} still serves" if serving else "; nothing serves now"
    if not failure or failure.get("model") != model_id:
        return [f"{model_id} did not load{still}: {status['message']}"]
    return [f"{failure_headline(failure)}{still}."] + failure_lines(
        failure, verbose=verbose, command=f"talktuah use {model_id}"
    )


def expires_in(row: dict[str, Any], now: datetime) -> str:
    """When a loaded model unloads by idle time, as a person reads it ("4m 10s")."""
    if row.get("pinned"):
        return "never (default model)"
    if row.get("in_flight"):
        return "in use"
    expires = row.get("expires_at")
    if not expires:
        return "never (keep_alive -1)" if row.get("state") == "ready" else "-"
    left = max(0, int((datetime.fromisoformat(expires) - now).total_seconds()))
    minutes, seconds = divmod(left, 60)
    return f"{minutes}m {seconds:02d}s" if minutes else f"{seconds}s"


def loaded_rows(models: list[dict[str, Any]], now: datetime) -> list[tuple[str, ...]]:
    """`talktuah ps`'s table of loaded models: model, state, engine, memory, expires in."""
    rows: list[tuple[str, ...]] = []
    for row in models:
        memory = row.get("memory_bytes")
        state = str(row["state"])
        if row.get("error") and state in ("failed", "restarting"):
            state += f": {row['error'].get('cause') or row.get('message', '')}"
        rows.append(
            (
                str(row["model"]),
                state,
                str(row.get("engine", "")),
                format_bytes(memory) if memory else "-",
                expires_in(row, now),
            )
        )
    return rows
