"""How a run ends when a message of it is given up on for a permanent error, per the state
it is in (pure: `stratum.runtime.ending.ending`), and who may publish that end."""

from __future__ import annotations

from typing import Any

import pytest

from stratum.events import Envelope, RunCancelled, RunCompensated, RunFailed, RunRejected
from stratum.runtime.ending import ending
from stratum.runtime.function import RUN_ENDINGS, Function
from tests.events import T0

REASON = "planner gave up on t.stage.completed message evt-1 (dead letter dl-1): UnknownRunError"


def run(status: str, **fields: Any) -> dict[str, Any]:
    return {"_id": "run-1", "tenant": "acme", "status": status, **fields}


def end(record: dict[str, Any], **saga: Any) -> Envelope | None:
    return ending(
        record,
        REASON,
        saga.get("executions", {}),
        saga.get("steps", {}),
        cause="evt-1",
        now=T0,
    )


def test_an_accepted_run_is_rejected_with_the_reason() -> None:
    event = end(run("Accepted", current_stage=-1))
    assert event is not None
    assert (event.type, event.runid, event.tenant) == (RunRejected.TYPE, "run-1", "acme")
    assert event.payload(RunRejected).error == REASON


@pytest.mark.parametrize("status", ["Planned", "Running"])
def test_a_planned_or_running_run_fails_at_its_stage_with_no_saga(status: str) -> None:
    event = end(run(status, current_stage=2))
    assert event is not None
    failed = event.payload(RunFailed)
    assert (failed.stage, failed.error, failed.compensating) == (2, REASON, False)


def test_a_compensating_run_ends_naming_the_steps_not_undone() -> None:
    executions = {
        "a": {"stage": 0, "status": "succeeded"},
        "b": {"stage": 1, "status": "succeeded"},
        "c": {"stage": 1, "status": "succeeded"},
        "d": {"stage": 2, "status": "failed"},  # the failure: nothing to undo
    }
    steps = {"c": {"status": "succeeded"}, "b": {"status": "skipped"}}  # `a` never reached
    event = end(run("Compensating"), executions=executions, steps=steps)
    assert event is not None
    assert event.payload(RunCompensated) == RunCompensated(compensated=["c"], failed=["a"])
    done = {node: {"status": "succeeded"} for node in ("a", "c")} | {"b": {"status": "skipped"}}
    finished = end(run("Compensating"), executions=executions, steps=done)
    assert finished is not None and finished.payload(RunCompensated).failed == []


CANCEL = {"actor": "operator", "reason": "wrong branch"}
EXECUTIONS = {
    "a": {"stage": 0, "status": "succeeded"},
    "b": {"stage": 1, "status": "cancelled"},
}


def test_a_cancelling_run_ends_cancelled_naming_what_was_never_undone() -> None:
    event = end(run("Cancelling", current_stage=1, cancel=CANCEL), executions=EXECUTIONS)
    assert event is not None
    assert event.payload(RunCancelled) == RunCancelled(
        actor="operator", reason="wrong branch", compensated=[], failed=["a"]
    )
    nothing_ran = end(run("Cancelling", current_stage=0, cancel=CANCEL))
    assert nothing_ran is not None and nothing_ran.payload(RunCancelled).failed == []


def test_a_cancelled_run_s_saga_ends_cancelled_not_compensated() -> None:
    steps = {"a": {"status": "succeeded"}}
    event = end(run("Compensating", cancel=CANCEL), executions=EXECUTIONS, steps=steps)
    assert event is not None
    assert event.payload(RunCancelled).compensated == ["a"]


def test_the_end_of_a_resumed_run_is_of_its_resumption() -> None:
    event = end(run("Running", current_stage=1, resumptions=2))
    assert event is not None and event.resumption == 2


@pytest.mark.parametrize(
    "status",
    ["Succeeded", "Failed", "Compensated", "CompensationFailed", "Denied", "Cancelled", "Held"],
)
def test_an_ended_run_stays_as_it_is(status: str) -> None:
    assert end(run(status)) is None


def test_the_end_is_named_by_the_message_so_a_repeat_is_the_same_event() -> None:
    first, again = end(run("Running", current_stage=0)), end(run("Running", current_stage=0))
    assert first is not None and again is not None and first.id == again.id
    other = ending(run("Running", current_stage=0), REASON, {}, {}, cause="evt-2", now=T0)
    assert other is not None and other.id != first.id


def test_a_function_that_ends_runs_may_publish_the_ends() -> None:
    driver = Function("f", "S", ("s",), emits=(RunFailed.TYPE, "x"), ends_runs=True)
    assert driver.emits[:2] == (RunFailed.TYPE, "x")  # its own first, nothing twice
    assert sorted(driver.emits) == sorted({RunFailed.TYPE, "x", *RUN_ENDINGS})
    watcher = Function("g", "S", ("s",), emits=("x",))
    assert watcher.emits == ("x",) and not watcher.ends_runs
