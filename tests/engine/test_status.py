"""EngineStatus and the load-failure diagnosis as pure values: no engine, no threads."""

from __future__ import annotations

import time

from talktuah.engine.base import EngineState
from talktuah.engine.diagnosis import diagnose
from talktuah.engine.status import EngineStatus, Failure, FailureKind, PendingRestart

from ..support.engine import NO_ARCHITECTURES_LOG


def failure(model_id: str = "org/b", kind: FailureKind = FailureKind.SWITCH) -> Failure:
    return Failure(model_id, "the engine process exited while loading", ("x",), "E: x", None, kind)


def test_loading_then_settling_leaves_no_loading_fields_behind() -> None:
    loading = EngineStatus().loading_model("org/a", "Loading org/a.")
    assert loading.state == EngineState.LOADING and loading.phase == "starting engine"
    assert loading.loading_since is not None
    again = loading.loading_model("org/b", "Restoring.")  # a rollback keeps the clock
    assert again.loading_since == loading.loading_since and again.loading == "org/b"
    ready = again.settled(EngineState.READY, "ok", serving="org/b")
    assert (ready.loading, ready.loading_since, ready.phase, ready.serving) == (
        None, None, "", "org/b",
    )  # fmt: skip
    assert EngineStatus().settled(EngineState.FAILED, "no", serving="org/b").serving is None


def test_a_rolled_back_switch_is_failed_for_old_clients_only() -> None:
    served = EngineStatus().settled(EngineState.READY, "ok", serving="org/a")
    rolled_back = EngineStatus(**{**vars(served), "failure": failure(), "switch_failed": True})
    body = rolled_back.to_api(engine="transformers", active_model="org/a")
    assert body["status"] == "failed" and body["engine_state"] == "ready"
    assert body["serving_model"] == "org/a" and body["model_loaded"] is True
    assert body["last_failure"]["model"] == "org/b" and body["failed_model"] == "org/b"
    crashed = EngineStatus(**{**vars(served), "failure": failure(kind=FailureKind.CRASH)})
    assert crashed.to_api(engine="e", active_model="org/a")["status"] == "ready"


def test_a_pending_restart_says_when() -> None:
    at = time.time() + 4
    pending = PendingRestart("org/a", 2, 5, at=at, due=time.monotonic() + 4)
    body = EngineStatus(restart=pending).to_api(engine="e", active_model=None)
    assert body["restart_pending"]["attempt"] == 2 and body["restart_pending"]["limit"] == 5
    assert 3 < body["restart_pending"]["seconds_left"] <= 4
    assert body["restart_pending"]["next_restart_at"].endswith("+00:00")
    assert EngineStatus().to_api(engine="e", active_model=None)["restart_pending"] is None


def test_the_cause_is_the_last_exception_line() -> None:
    found = diagnose(
        NO_ARCHITECTURES_LOG.splitlines(), "exited", engine="transformers", model_id="org/x"
    )
    assert found.cause == "TypeError: 'NoneType' object is not subscriptable"
    assert found.hint is not None and "org/x names no `architectures`" in found.hint
    plain = diagnose(
        ["INFO: starting", "Killed"], "the engine process died", engine="e", model_id="m"
    )
    assert plain.cause == "the engine process died" and plain.hint is None


def test_hints_for_memory_and_unsupported_architectures() -> None:
    oom = ["torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB"]
    found = diagnose(oom, "exited", engine="vllm", model_id="org/big")
    assert found.cause.startswith("torch.OutOfMemoryError") and "does not fit" in (found.hint or "")
    vllm = [
        "ERROR 01-01 engine failed",
        "ValueError: Model architectures ['FooForCausalLM'] are not supported for now.",
    ]
    unsupported = diagnose(vllm, "exited", engine="vllm", model_id="org/foo")
    assert unsupported.cause.startswith("ValueError: Model architectures")
    assert "vllm engine does not support the architecture of org/foo" in (unsupported.hint or "")
    nested = ["  File x", "    raise", "KeyError: 'foo'"]
    assert diagnose(nested, "r", engine="e", model_id="m").cause == "KeyError: 'foo'"
