"""The pure decisions behind hold and resume: a stage that fails in a node declaring
`on_failure = "hold"` holds its run (the stage executor's `after_stage`); a resume plans
the run anew and starts from the first stage with a node that has not succeeded, in the
run's next resumption (the planner's `on_resume`); a cancel of a held run goes to the saga
or ends it (`on_cancel`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from functions.planner.core import admitted, on_cancel, on_resume
from functions.stage_executor.core import after_stage
from stratum.events import (
    CancelRun,
    CompensateRun,
    ExecuteStage,
    ResumeRun,
    RunCancelled,
    RunCancelling,
    RunFailed,
    RunHeld,
    RunResumed,
    StageFailed,
    emit,
)
from stratum.graph import ActionGraph, ActionNode
from tests.events import T0, run_events


def node(
    node_id: str,
    consumes: tuple[str, ...] = (),
    on_failure: Literal["compensate", "hold"] = "compensate",
) -> ActionNode:
    return ActionNode(
        id=node_id,
        trigger="t.x",
        consumes=consumes,
        produces=(f"{node_id}-out",),
        handler=Path(f"/defs/{node_id}.nu"),
        compensate=Path("/defs/undo.nu"),
        on_failure=on_failure,
    )


def graph(version: str, *nodes: ActionNode) -> ActionGraph:
    return ActionGraph(
        version=version,
        nodes={n.id: n for n in nodes},
        schemas={f"{n.id}-out": {"type": "object"} for n in nodes},
    )


# a (stage 0) feeds b and c (stage 1); b holds, c compensates
GRAPH = graph("v1", node("a"), node("b", ("a-out",), "hold"), node("c", ("a-out",)))
EXECUTIONS = {
    "a": {"stage": 0, "status": "succeeded"},
    "b": {"stage": 1, "status": "failed"},
    "c": {"stage": 1, "status": "succeeded"},
}


def stage_failed(*failed: str) -> Any:
    [event] = run_events([StageFailed(stage=1, failed=list(failed), error="node b: exit 3")])
    return event


def test_a_stage_failing_in_a_holding_node_holds_the_run_and_undoes_nothing() -> None:
    step = after_stage(stage_failed("b"), [["a"], ["b", "c"]], EXECUTIONS, {}, GRAPH, T0)
    assert step.kind == "hold" and step.undo == () and step.error == "node b: exit 3"
    [held] = step.events
    assert held.payload(RunHeld) == RunHeld(stage=1, failed=["b"], error="node b: exit 3")


def test_a_stage_failing_only_in_compensating_nodes_is_undone_as_before() -> None:
    executions = EXECUTIONS | {"b": {"stage": 1, "status": "succeeded"}}
    executions["c"] = {"stage": 1, "status": "failed"}
    step = after_stage(stage_failed("c"), [["a"], ["b", "c"]], executions, {}, GRAPH, T0)
    assert step.kind == "fail" and step.undo == ("b", "a")
    assert [e.type for e in step.events] == [RunFailed.TYPE, CompensateRun.TYPE]


def test_one_holding_node_among_the_failed_holds_the_run() -> None:
    step = after_stage(stage_failed("b", "c"), [["a"], ["b", "c"]], EXECUTIONS, {}, GRAPH, T0)
    assert step.kind == "hold"


def request(payload: Any, resumption: int = 0) -> Any:
    return emit(
        payload,
        cause="req-1",
        run_id="run-1",
        tenant="acme",
        source="stratum/api",
        now=T0,
        resumption=resumption,
    )


HELD_RUN = {"status": "Held", "topic": "t.x", "held": {"stage": 1}, "interventions": []}
RESUME = ResumeRun(actor="operator", reason="fixed", policy_ids=["p"])


def test_a_resume_plans_anew_and_starts_where_a_node_has_not_succeeded() -> None:
    succeeded = {"a", "c"}
    resume = on_resume(request(RESUME), HELD_RUN, GRAPH, None, succeeded, T0)
    assert (resume.outcome, resume.resumption, resume.from_stage) == ("resumed", 1, 1)
    assert resume.stages == [["a"], ["b", "c"]] and resume.graph_version == "v1"
    resumed, execute = resume.events
    assert resumed.payload(RunResumed).from_stage == 1
    assert execute.payload(ExecuteStage) == ExecuteStage(stage=1, nodes=["b", "c"])
    # the run's next resumption, for every event that follows from here
    assert (resumed.resumption, execute.resumption) == (1, 1)
    assert resume.entry["outcome"] == "resumed" and resume.entry["from_stage"] == 1
    # the same request decided again gives the same events (ids derive from it)
    again = on_resume(request(RESUME), HELD_RUN, GRAPH, None, succeeded, T0)
    assert [e.id for e in again.events] == [e.id for e in resume.events]


def test_a_resume_uses_the_graph_in_force_and_counts_the_resumptions() -> None:
    # the fix moved b: a new node d now comes first, so the run starts at stage 0
    changed = graph(
        "v2", node("d"), node("a", ("d-out",)), node("b", ("a-out",), "hold"), node("c")
    )
    run = HELD_RUN | {"resumptions": 2}
    resume = on_resume(request(RESUME, 2), run, changed, None, {"a", "c"}, T0)
    assert (resume.graph_version, resume.resumption) == ("v2", 3)
    assert resume.from_stage == 0 and resume.stages[0] == ["c", "d"]


def test_a_resume_of_a_run_where_everything_succeeded_runs_its_last_stage() -> None:
    resume = on_resume(request(RESUME), HELD_RUN, GRAPH, None, {"a", "b", "c"}, T0)
    assert resume.from_stage == 1


def test_a_resume_that_cannot_apply_leaves_the_run_as_it_was() -> None:
    running = on_resume(request(RESUME), HELD_RUN | {"status": "Running"}, GRAPH, None, (), T0)
    assert (running.outcome, running.events) == ("ignored", [])
    assert running.entry["outcome"] == "ignored: the run was Running"
    broken = on_resume(request(RESUME), HELD_RUN, None, "x.ncl:3:1: boom", (), T0)
    assert broken.entry["outcome"] == "ignored: no valid workflow graph is loaded: x.ncl:3:1: boom"
    unknown = on_resume(request(RESUME), HELD_RUN | {"topic": "t.gone"}, GRAPH, None, (), T0)
    assert unknown.outcome == "ignored" and "t.gone" in unknown.entry["outcome"]
    seen = HELD_RUN | {"interventions": [{"request": request(RESUME).id}]}
    assert on_resume(request(RESUME), seen, GRAPH, None, (), T0).outcome == "repeat"


CANCEL = CancelRun(actor="operator", reason="give up", policy_ids=["p"])


def test_a_held_run_cancelled_goes_to_the_saga_from_the_stage_it_holds_at() -> None:
    cancel = on_cancel(request(CANCEL), HELD_RUN, T0, ("c", "a"))
    assert cancel.outcome == "compensating"
    stopping, saga = cancel.events
    assert stopping.type == RunCancelling.TYPE
    assert saga.payload(CompensateRun) == CompensateRun(failed_stage=1)
    assert cancel.entry["error"] == "cancelled by operator: give up"


def test_a_held_run_with_nothing_to_undo_is_cancelled_at_once() -> None:
    cancel = on_cancel(request(CANCEL), HELD_RUN, T0, ())
    assert cancel.outcome == "cancelled"
    assert [e.type for e in cancel.events] == [RunCancelling.TYPE, RunCancelled.TYPE]


def test_a_cancel_s_events_are_of_the_run_s_resumption_as_stored() -> None:
    # asked when the run was in its first resumption; applied when it is in its second
    resumed_twice = HELD_RUN | {"resumptions": 2}
    cancel = on_cancel(request(CANCEL, 1), resumed_twice, T0, ("a",))
    assert {event.resumption for event in cancel.events} == {2}
    running = {"status": "Running", "resumptions": 1, "interventions": []}
    assert {e.resumption for e in on_cancel(request(CANCEL), running, T0).events} == {1}


def test_a_queued_run_admitted_by_a_resumed_run_s_end_is_of_its_own_first_resumption() -> None:
    [ended] = run_events([RunCancelled(actor="operator", reason="")])
    admission = admitted("run-2", "acme", ended.model_copy(update={"resumption": 3}), 1, 0, T0)
    assert admission.resumption == 0 and admission.runid == "run-2"


def test_a_request_kept_as_ignored_is_a_repeat_when_delivered_again() -> None:
    ended = {"status": "Succeeded", "interventions": []}
    first = on_cancel(request(CANCEL), ended, T0)
    assert first.outcome == "ignored"
    kept = ended | {"interventions": [first.entry]}
    assert on_cancel(request(CANCEL), kept, T0).outcome == "repeat"
