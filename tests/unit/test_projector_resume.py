"""The projector's fold of held and resumed runs: a resume's events replace what the held
attempt said, and the view is still the same whatever order the events arrive in, and
however often."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import timedelta

import pytest

from functions.projector.core import HeldView, ResumeView, RunView, apply, history_item
from stratum.events import (
    CancelRun,
    CompensateRun,
    CompensationRecorded,
    Envelope,
    ExecuteStage,
    NodeFailed,
    NodeStarted,
    NodeSucceeded,
    Payload,
    ResumeRun,
    RunCancelled,
    RunCancelling,
    RunHeld,
    RunPlanned,
    RunResumed,
    RunSucceeded,
    StageCompleted,
    StageFailed,
    emit,
    follow,
)
from tests.events import T0, accepted

PLAN = [["a", "b"], ["c"], ["d"]]
# the plan a resume runs with: the graph changed, stage 2 has a new node
REPLAN = [["a", "b"], ["c"], ["d", "e"]]
C_ERROR = "node c: exit code 1: no"


class Run:
    """A run's events as the functions emit them: each caused by another (so in its
    resumption unless told otherwise), 1 ms apart."""

    def __init__(self) -> None:
        self.events: list[Envelope] = []

    def _add(self, event: Envelope) -> Envelope:
        self.events.append(event)
        return event

    def _now(self) -> timedelta:
        return timedelta(milliseconds=len(self.events))

    def request(self, payload: Payload, cause: str) -> Envelope:
        """What starts outside the run: the trigger, an operator's request."""
        return self._add(
            emit(
                payload,
                cause=cause,
                run_id="run-1",
                tenant="acme",
                source="t",
                now=T0 + self._now(),
            )
        )

    def then(self, payload: Payload, cause: Envelope, resumption: int | None = None) -> Envelope:
        node = str(getattr(payload, "node", ""))
        return self._add(
            follow(
                payload,
                cause,
                source="t",
                now=T0 + self._now(),
                discriminator=node,
                resumption=resumption,
            )
        )

    def stage(self, index: int, nodes: dict[str, str | None], cause: Envelope) -> Envelope:
        """Stage `index` runs `nodes` (name: None if it succeeds, else its error); its
        end (`stage.completed` or `stage.failed`) is returned."""
        command = self.then(ExecuteStage(stage=index, nodes=list(nodes)), cause)
        for node in nodes:
            self.then(NodeStarted(stage=index, node=node), command)
        ends = []
        for attempts, (node, error) in enumerate(nodes.items(), start=1):
            if error is None:
                outcome: Payload = NodeSucceeded(
                    stage=index,
                    node=node,
                    attempts=attempts,
                    duration_ms=1,
                    outputs_hash=f"{node}-{command.resumption}",
                    bundle=f"/{node}/{command.resumption}",
                )
            else:
                outcome = NodeFailed(
                    stage=index,
                    node=node,
                    attempts=attempts + 2,
                    duration_ms=2,
                    error=error,
                    cancelled=False,
                    bundle=f"/{node}/{command.resumption}",
                )
            ends.append(self.then(outcome, command))
        failed = [node for node, error in nodes.items() if error is not None]
        if failed:
            first = nodes[failed[0]]
            assert first is not None
            return self.then(StageFailed(stage=index, failed=failed, error=first), ends[-1])
        return self.then(StageCompleted(stage=index, nodes=list(nodes)), ends[-1])

    def hold(self, stage_failed: Envelope) -> Envelope:
        failure = stage_failed.payload(StageFailed)
        return self.then(
            RunHeld(stage=failure.stage, failed=failure.failed, error=failure.error), stage_failed
        )

    def resume(self, resumption: int, from_stage: int, plan: list[list[str]] = REPLAN) -> Envelope:
        """An operator's `stratum resume`, and the planner's `run.resumed`."""
        asked = self.request(
            ResumeRun(actor="operator", reason=f"fixed ({resumption})", policy_ids=["ops"]),
            f"resume-{resumption}",
        )
        resumed = RunResumed(
            actor="operator",
            reason=f"fixed ({resumption})",
            policy_ids=["ops"],
            resumption=resumption,
            graph_version=f"v{resumption + 1}",
            stages=plan,
            from_stage=from_stage,
        )
        return self.then(resumed, asked, resumption=resumption)


def held_at_c() -> tuple[Run, Envelope]:
    """Stage 0 (a, b) succeeds, c fails in stage 1 and holds the run."""
    run = Run()
    started = run.request(accepted(), "trigger")
    planned = run.then(RunPlanned(graph_version="v1", stages=PLAN), started)
    done = run.stage(0, {"a": None, "b": None}, planned)
    return run, run.hold(run.stage(1, {"c": C_ERROR}, done))


def resumed_to_success() -> list[Envelope]:
    run, _ = held_at_c()
    resumed = run.resume(1, from_stage=1)
    done = run.stage(2, {"d": None, "e": None}, run.stage(1, {"c": None}, resumed))
    run.then(RunSucceeded(outputs_hash="all"), done)
    return run.events


def resumed_then_held_again() -> list[Envelope]:
    """After the resume c succeeds, but d fails in stage 2: held again."""
    run, _ = held_at_c()
    resumed = run.resume(1, from_stage=1)
    done = run.stage(1, {"c": None}, resumed)
    run.hold(run.stage(2, {"e": None, "d": "node d: exit code 2: again"}, done))
    return run.events


def resumed_twice_to_success() -> list[Envelope]:
    run, _ = held_at_c()
    held = run.hold(run.stage(1, {"c": "node c: still no"}, run.resume(1, from_stage=1)))
    assert held.resumption == 1
    resumed = run.resume(2, from_stage=1)
    done = run.stage(2, {"d": None, "e": None}, run.stage(1, {"c": None}, resumed))
    run.then(RunSucceeded(outputs_hash="all"), done)
    return run.events


def resumed_with_fewer_stages() -> list[Envelope]:
    """The graph changed while the run was held: d now runs beside c, stage 2 is gone."""
    run, _ = held_at_c()
    resumed = run.resume(1, from_stage=1, plan=[["a", "b"], ["c", "d"]])
    run.then(RunSucceeded(outputs_hash="all"), run.stage(1, {"c": None, "d": None}, resumed))
    return run.events


def held_then_cancelled() -> list[Envelope]:
    run, held = held_at_c()
    asked = run.request(CancelRun(actor="operator", reason="give up", policy_ids=["ops"]), "cancel")
    cancelling = run.then(RunCancelling(actor="operator", reason="give up", policy_ids=[]), asked)
    assert cancelling.resumption == held.resumption == 0
    saga = run.then(CompensateRun(failed_stage=1), cancelling)
    for order, node in enumerate(("b", "a")):
        run.then(
            CompensationRecorded(
                order=order, stage=0, node=node, status="succeeded", duration_ms=1
            ),
            saga,
        )
    run.then(RunCancelled(actor="operator", reason="give up", compensated=["b", "a"]), saga)
    return run.events


def fold(events: list[Envelope], view: RunView | None = None) -> RunView:
    for event in events:
        view = apply(view, event)
    assert view is not None
    return view


def upto(events: list[Envelope], kind: str, nth: int = 1) -> list[Envelope]:
    """The events up to and including the `nth` of type `kind`."""
    seen = 0
    for index, event in enumerate(events):
        seen += event.type == kind
        if seen == nth:
            return events[: index + 1]
    raise AssertionError(f"no {nth}th {kind}")


def test_a_resumed_run_that_succeeds_shows_the_new_attempt_and_keeps_the_earlier_nodes() -> None:
    events = resumed_to_success()
    before = fold(upto(events, RunHeld.TYPE))
    assert (before.status, before.error, before.resumption) == ("Held", C_ERROR, 0)
    held_at = history_item(upto(events, RunHeld.TYPE)[-1]).time
    assert before.held == HeldView(stage=1, failed=["c"], error=C_ERROR, at=held_at)
    view = fold(events)
    assert (view.status, view.finished, view.resumption) == ("Succeeded", True, 1)
    assert (view.error, view.held, view.graph_version) == (None, None, "v2")
    assert view.duration_ms == float(len(events) - 1)
    c = view.nodes["c"]
    assert (c.status, c.attempts, c.resumption, c.error, c.bundle) == (
        "succeeded",
        1,
        1,
        None,
        "/c/1",
    )
    assert c.started_at is not None and c.started_at > str(before.nodes["c"].started_at)
    assert view.nodes["a"] == before.nodes["a"] and view.nodes["b"] == before.nodes["b"]
    assert {n: v.status for n, v in view.nodes.items()} == dict.fromkeys("abcde", "succeeded")
    assert [(s.nodes, s.status) for s in view.stages] == [
        (["a", "b"], "succeeded"),
        (["c"], "succeeded"),
        (["d", "e"], "succeeded"),
    ]
    (resumed,) = (e for e in events if e.type == RunResumed.TYPE)
    assert view.resumes == [
        ResumeView(
            resumption=1,
            actor="operator",
            reason="fixed (1)",
            graph_version="v2",
            from_stage=1,
            at=history_item(resumed).time,
        )
    ]


def test_a_resume_runs_again_from_its_stage_with_the_new_plan() -> None:
    view = fold(upto(resumed_to_success(), RunResumed.TYPE))
    assert (view.status, view.resumption, view.error, view.held) == ("Running", 1, None, None)
    assert view.graph_version == "v2"
    assert [(s.status, s.resumption) for s in view.stages] == [
        ("succeeded", 1),
        ("pending", 1),
        ("pending", 1),
    ]
    # c has not run again yet: what it shows is the held attempt's; e is new
    assert (view.nodes["c"].status, view.nodes["c"].resumption) == ("failed", 0)
    assert (view.nodes["e"].status, view.nodes["e"].stage) == ("pending", 2)


def test_a_resumed_run_held_again_names_the_second_failure() -> None:
    events = resumed_then_held_again()
    view = fold(events)
    assert (view.status, view.finished, view.resumption) == ("Held", False, 1)
    second = "node d: exit code 2: again"
    assert view.error == second
    assert view.held is not None
    assert (view.held.stage, view.held.failed, view.held.error) == (2, ["d"], second)
    assert view.held.at == history_item(events[-1]).time
    assert [r.resumption for r in view.resumes] == [1]
    assert [s.status for s in view.stages] == ["succeeded", "succeeded", "failed"]
    assert {n: v.status for n, v in view.nodes.items()} == {
        "a": "succeeded",
        "b": "succeeded",
        "c": "succeeded",
        "d": "failed",
        "e": "succeeded",
    }


def test_a_held_run_cancelled_ends_cancelled_with_what_was_undone() -> None:
    view = fold(held_then_cancelled())
    assert (view.status, view.finished, view.resumption) == ("Cancelled", True, 0)
    assert (view.cancelled_by, view.cancel_reason) == ("operator", "give up")
    assert view.error == "cancelled by operator: give up"
    assert [(c.order, c.node, c.status) for c in view.compensation] == [
        (0, "b", "succeeded"),
        (1, "a", "succeeded"),
    ]
    assert view.held is not None and view.held.stage == 1  # where it was when cancelled
    assert view.resumes == []


def test_a_second_resume_starts_over_again() -> None:
    view = fold(resumed_twice_to_success())
    assert (view.status, view.resumption, view.graph_version) == ("Succeeded", 2, "v3")
    assert [(r.resumption, r.graph_version) for r in view.resumes] == [(1, "v2"), (2, "v3")]
    assert (view.nodes["c"].resumption, view.nodes["c"].status) == (2, "succeeded")


def test_the_first_plan_arriving_late_does_not_undo_the_resumes() -> None:
    events = resumed_to_success()
    (planned,) = (e for e in events if e.type == RunPlanned.TYPE)
    view = fold([e for e in events if e is not planned] + [planned])
    assert view.graph_version == "v2"
    assert [s.nodes for s in view.stages] == REPLAN
    assert view.model_dump() == fold(events).model_dump()


def test_a_resume_with_fewer_stages_drops_the_old_plans_last_stage() -> None:
    events = resumed_with_fewer_stages()
    before_d_ran = fold(upto(events, RunResumed.TYPE))
    assert (before_d_ran.nodes["d"].status, before_d_ran.nodes["d"].stage) == ("pending", 1)
    view = fold(events)
    assert [(s.nodes, s.status) for s in view.stages] == [
        (["a", "b"], "succeeded"),
        (["c", "d"], "succeeded"),
    ]
    assert (view.status, view.nodes["d"].stage) == ("Succeeded", 1)


SCENARIOS: dict[str, Callable[[], list[Envelope]]] = {
    "resumed to success": resumed_to_success,
    "resumed and held again": resumed_then_held_again,
    "resumed twice": resumed_twice_to_success,
    "resumed with fewer stages": resumed_with_fewer_stages,
    "held then cancelled": held_then_cancelled,
}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_any_arrival_order_of_any_of_the_events_and_repeats_give_the_same_view(
    scenario: str,
) -> None:
    """Live projection folds whatever subset of a run's events has arrived, in any order,
    some of them again (a redelivery, a re-fold after a lost write): every arrival order
    of the same events gives the same view, and folding an event again changes nothing."""
    events = SCENARIOS[scenario]()
    expected = fold(events).model_dump()
    seed = 20261201 + len(events)
    rng = random.Random(seed)
    for _ in range(300):
        shuffled = rng.sample(events, len(events))
        assert fold(shuffled).model_dump() == expected, f"seed {seed}"
        subset = rng.sample(events, rng.randint(1, len(events)))
        partial = fold(subset)
        assert fold(rng.sample(subset, len(subset))).model_dump() == partial.model_dump()
        again = rng.choice(events)
        once = apply(partial, again)
        assert apply(once, again) == once
    assert fold(events + events[::-1]).model_dump() == expected


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_a_view_stored_and_read_back_folds_on_to_the_same_view(scenario: str) -> None:
    events = SCENARIOS[scenario]()
    half = len(events) // 2
    stored = fold(events[:half]).model_dump(mode="json")
    assert fold(events[half:], RunView.model_validate(stored)) == fold(events)


def test_a_view_stored_before_resumes_existed_still_loads() -> None:
    stored = fold(upto(held_then_cancelled(), StageCompleted.TYPE)).model_dump(mode="json")
    for key in ("resumption", "held", "resumes"):
        del stored[key]
    for part in [*stored["nodes"].values(), *stored["stages"]]:
        del part["resumption"]
    view = RunView.model_validate(stored)
    assert (view.resumption, view.held, view.resumes) == (0, None, [])
    assert {n.resumption for n in view.nodes.values()} | {s.resumption for s in view.stages} == {0}


def test_the_history_says_where_a_run_was_held_and_resumed_and_why() -> None:
    events = resumed_then_held_again()
    summaries = [history_item(e).summary for e in events if e.type.startswith("stratum.run.")]
    assert summaries == [
        "run.accepted",
        "run.planned",
        f"run.held 1: {C_ERROR}",
        "run.resume: fixed (1)",
        "run.resumed 1: fixed (1)",
        "run.held 2: node d: exit code 2: again",
    ]
