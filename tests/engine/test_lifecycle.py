"""The instance state machine (engine/lifecycle.py) and the room planner (engine/budget.py),
without a process: every transition, the restart backoff, and what eviction may take."""

from __future__ import annotations

import pytest

from talktuah.engine.budget import (
    NoRoom,
    Resident,
    parse_keep_alive,
    parse_memory_budget,
    plan_room,
)
from talktuah.engine.lifecycle import (
    ALLOWED,
    IllegalTransition,
    InstanceState,
    InstanceStatus,
    plan_restart,
)
from talktuah.engine.status import Failure, FailureKind

S = InstanceState
FAIL = Failure("org/a", "the engine process died", ("boom",), "boom", None, FailureKind.CRASH)


def test_a_load_serves_and_an_unload_stops() -> None:
    status = InstanceStatus("org/a")
    loading = status.loading("Loading org/a.")
    assert loading.state == S.LOADING and loading.phase == "starting engine"
    weights = loading.with_phase("loading weights")
    ready = weights.ready("org/a is loaded and serving.")
    assert ready.state == S.READY and ready.loaded_at is not None and ready.phase == ""
    assert ready.serving and ready.holds_process
    gone = ready.unloading("bye").stopped("bye")
    assert gone.state == S.STOPPED and not gone.holds_process and gone.loaded_at is None
    assert status.state == S.STOPPED, "a status is never changed in place"


def test_a_crash_restarts_with_backoff_until_the_limit() -> None:
    failed = InstanceStatus("org/a").loading("l").ready("r").failed(FAIL, "died")
    plan = plan_restart(failed, limit=2, backoff=1.5, now=100.0, monotonic=10.0)
    assert plan is not None and (plan.attempt, plan.at, plan.due) == (1, 101.5, 11.5)
    restarting = failed.restarting(plan, "Restarting")
    assert restarting.state == S.RESTARTING and restarting.restarts == 1
    again = restarting.loading("again", restart=True).failed(FAIL, "failed again")
    assert again.restarts == 1 and again.failure is FAIL, "a restart keeps the count"
    second = plan_restart(again, limit=2, backoff=1.5, now=100.0, monotonic=10.0)
    assert second is not None and second.attempt == 2 and second.due == 13.0  # doubled
    assert plan_restart(again.restarting(second, "r"), limit=2, backoff=1, now=0,
                        monotonic=0) is None  # fmt: skip


def test_a_load_supersedes_a_pending_restart_and_starts_the_count_anew() -> None:
    """Issue 16/18: a switch during the backoff was refused for up to ~62 s."""
    failed = InstanceStatus("org/a").loading("l").ready("r").failed(FAIL, "died")
    plan = plan_restart(failed, limit=5, backoff=30, now=0, monotonic=0)
    assert plan is not None
    loading = failed.restarting(plan, "waiting").loading("asked for")
    assert loading.restart is None and loading.restarts == 0 and loading.failure is None


@pytest.mark.parametrize(
    ("start", "move"),
    [
        (S.STOPPED, "ready"),
        (S.STOPPED, "unloading"),
        (S.UNLOADING, "loading"),
        (S.READY, "stopped"),
        (S.LOADING, "stopped"),
    ],
)
def test_transitions_outside_the_table_are_refused(start: InstanceState, move: str) -> None:
    status = InstanceStatus("org/a", state=start)
    step = getattr(status, move)
    with pytest.raises(IllegalTransition):
        step("m") if move != "failed" else step(FAIL, "m")


def test_every_state_can_reach_stopped() -> None:
    """No state is a trap: from each, some path ends in `stopped` (a Stop always works)."""
    for state in S:
        seen, todo = {state}, [state]
        while todo:
            for nxt in ALLOWED[todo.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        assert S.STOPPED in seen, state


def test_keep_alive_reads_ollamas_format() -> None:
    assert parse_keep_alive("5m") == 300 and parse_keep_alive("2s") == 2
    assert parse_keep_alive("1h") == 3600 and parse_keep_alive(30) == 30
    assert parse_keep_alive("500ms") == 0.5 and parse_keep_alive("0") == 0
    assert parse_keep_alive(-1) is None and parse_keep_alive("-1") is None
    for bad in ("soon", True, [], "5 minutes"):
        with pytest.raises(ValueError, match="5m"):
            parse_keep_alive(bad)


def test_memory_budget_is_bytes_or_a_percentage() -> None:
    assert parse_memory_budget("75%", 1000) == 750
    assert parse_memory_budget("8GiB", None) == 8 * 2**30
    assert parse_memory_budget("1000", None) == 1000
    assert parse_memory_budget("none", 1000) is None
    assert parse_memory_budget("50%", None) is None  # unknown total: no budget to apply
    with pytest.raises(ValueError, match="percentage"):
        parse_memory_budget("lots", 1000)


def resident(model_id: str, used: float, *, size: int = 10, pinned: bool = False,
             busy: bool = False) -> Resident:  # fmt: skip
    return Resident(model_id, size, used, pinned=pinned, busy=busy)


def test_the_least_recently_used_idle_model_is_evicted() -> None:
    loaded = [resident("org/new", 3), resident("org/old", 1), resident("org/mid", 2)]
    victims = plan_room(loaded, 10, max_loaded=3, budget=None)
    assert [v.model_id for v in victims] == ["org/old"]
    assert plan_room(loaded[:1], 10, max_loaded=3, budget=None) == []


def test_pinned_and_busy_models_are_never_evicted() -> None:
    loaded = [resident("org/default", 0, pinned=True), resident("org/stream", 1, busy=True),
              resident("org/idle", 2)]  # fmt: skip
    victims = plan_room(loaded, 10, max_loaded=3, budget=None)
    assert [v.model_id for v in victims] == ["org/idle"]
    with pytest.raises(NoRoom) as full:
        plan_room(loaded[:2], 10, max_loaded=2, budget=None)
    assert full.value.pinned == ("org/default",) and full.value.busy == ("org/stream",)
    assert "pinned: org/default; busy: org/stream" in str(full.value)
    assert "POST /api/unload-model" in str(full.value)


def test_a_memory_budget_evicts_as_many_as_it_takes() -> None:
    loaded = [resident("org/a", 1, size=40), resident("org/b", 2, size=40)]
    victims = plan_room(loaded, 50, max_loaded=10, budget=100)
    assert [v.model_id for v in victims] == ["org/a"]
    assert [v.model_id for v in plan_room(loaded, 90, max_loaded=10, budget=100)] == [
        "org/a", "org/b",
    ]  # fmt: skip
    assert plan_room([], 500, max_loaded=1, budget=100) == [], "alone, it loads anyway"
