"""A failed stage with nothing to undo ends the run Failed; a saga runs only when a node
that succeeded has a compensate script (the stage executor's pure decision at a stage's
end, `after_stage`, with `stratum.runs.saga`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from functions.planner.core import ends_run
from functions.stage_executor.core import after_stage
from stratum.events import CompensateRun, RunCompensated, RunFailed, RunSucceeded, StageFailed
from stratum.graph import ActionGraph, ActionNode
from stratum.runs.saga import undoable
from tests.events import T0, run_events


def node(node_id: str, *, undo: bool) -> ActionNode:
    return ActionNode(
        id=node_id,
        handler=Path(f"/defs/{node_id}.nu"),
        compensate=Path(f"/defs/{node_id}-undo.nu") if undo else None,
    )


# a (stage 0, undo) and b (stage 0, no undo) feed c (stage 1, undo), then d (stage 2)
GRAPH = ActionGraph(
    version="v1",
    nodes={
        n.id: n
        for n in (
            node("a", undo=True),
            node("b", undo=False),
            node("c", undo=True),
            node("d", undo=False),
        )
    },
    schemas={},
)


def ran(**statuses: str) -> dict[str, dict[str, Any]]:
    stage = {"a": 0, "b": 0, "c": 1, "d": 2}
    return {n: {"stage": stage[n], "status": status} for n, status in statuses.items()}


CASES = {
    "the only node failed, nothing succeeded": (ran(a="failed"), []),
    "a sibling with an undo was cancelled, not succeeded": (
        ran(a="cancelled", b="failed"),
        [],
    ),
    "succeeded nodes have no compensate script": (ran(b="succeeded", c="failed"), []),
    "a succeeded sibling in the failed stage has one": (ran(a="succeeded", b="failed"), ["a"]),
    "one succeeded node with a compensate script among others": (
        ran(a="succeeded", b="succeeded", c="failed"),
        ["a"],
    ),
    "several, latest stage first": (
        ran(a="succeeded", b="succeeded", c="succeeded", d="failed"),
        ["c", "a"],
    ),
}


@pytest.mark.parametrize(("executions", "expected"), CASES.values(), ids=CASES.keys())
def test_what_a_saga_would_undo(executions: dict[str, Any], expected: list[str]) -> None:
    assert undoable(executions, GRAPH) == expected


@pytest.mark.parametrize(("executions", "expected"), CASES.values(), ids=CASES.keys())
def test_a_failed_stage_ends_the_run_unless_something_can_be_undone(
    executions: dict[str, Any], expected: list[str]
) -> None:
    (stage_failed,) = run_events([StageFailed(stage=1, failed=["c"], error="node c: exit code 1")])
    plan = [["a", "b"], ["c"], ["d"]]
    step = after_stage(stage_failed, plan, executions, {}, GRAPH, T0)
    assert step.kind == "fail" and step.undo == tuple(expected)
    events = list(step.events)

    announced = events[0].payload(RunFailed)
    assert (announced.stage, announced.error) == (1, "node c: exit code 1")
    assert announced.compensating == bool(expected)
    assert [e.type for e in events[1:]] == ([CompensateRun.TYPE] if expected else [])
    # the run.failed ends the run (a queued run of the tenant may start) only without a saga
    assert ends_run(events[0]) is not bool(expected)
    # a redelivery decides the same, with the same event ids
    assert after_stage(stage_failed, plan, executions, {}, GRAPH, T0) == step


def test_what_else_ends_a_run() -> None:
    succeeded, compensated, compensate = run_events(
        [
            RunSucceeded(outputs_hash="h"),
            RunCompensated(compensated=["a"], failed=[]),
            CompensateRun(failed_stage=1),
        ]
    )
    assert ends_run(succeeded) and ends_run(compensated)
    assert not ends_run(compensate)
    # a run.failed from before `compensating` existed was always followed by a saga
    (new,) = run_events([RunFailed(stage=1, error="x")])
    old = new.model_copy(update={"data": {"stage": 1, "error": "x"}})
    assert old.payload(RunFailed).compensating and not ends_run(old)
