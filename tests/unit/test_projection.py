"""The projector's fold: same view whatever order a run's events arrive in, and twice."""

from __future__ import annotations

import itertools
import random
import uuid

import pytest

from functions.projector.app import count_transition
from functions.projector.core import RunView, apply
from stratum.clock import iso
from stratum.events import (
    CompensateRun,
    CompensationRecorded,
    Envelope,
    ExecuteStage,
    NodeFailed,
    NodeStarted,
    NodeSucceeded,
    Payload,
    RunCompensated,
    RunDenied,
    RunFailed,
    RunPlanned,
    RunSucceeded,
    StageCompleted,
    StageFailed,
)
from stratum.telemetry import metrics
from tests.events import accepted, run_events

ACCEPTED = accepted()


def enveloped(payloads: list[Payload]) -> list[Envelope]:
    return run_events(payloads)


def events() -> list[Envelope]:
    payloads: list[Payload] = [
        ACCEPTED,
        RunPlanned(graph_version="v", stages=[["a", "b"], ["c"]]),
        ExecuteStage(stage=0, nodes=["a", "b"]),
        NodeStarted(stage=0, node="a"),
        NodeStarted(stage=0, node="b"),
        NodeSucceeded(stage=0, node="a", attempts=1, duration_ms=5, outputs_hash="x", bundle="/a"),
        NodeSucceeded(stage=0, node="b", attempts=2, duration_ms=6, outputs_hash="y", bundle="/b"),
        StageCompleted(stage=0, nodes=["a", "b"]),
        ExecuteStage(stage=1, nodes=["c"]),
        NodeStarted(stage=1, node="c"),
        NodeSucceeded(stage=1, node="c", attempts=1, duration_ms=7, outputs_hash="z", bundle="/c"),
        StageCompleted(stage=1, nodes=["c"]),
        RunSucceeded(outputs_hash="all"),
    ]
    return enveloped(payloads)


def saga(undo_b: str) -> list[Envelope]:
    """Stage 1 fails; `a` and `b` of stage 0 are undone, `b`'s undo ending `undo_b`."""
    b_error = "node b: exit code 1: no (after 3 attempts)" if undo_b == "failed" else None
    return enveloped(
        [
            ACCEPTED,
            RunPlanned(graph_version="v", stages=[["a", "b"], ["c"]]),
            NodeSucceeded(stage=0, node="a", attempts=1, duration_ms=5, bundle="/a"),
            NodeSucceeded(stage=0, node="b", attempts=1, duration_ms=5, bundle="/b"),
            StageCompleted(stage=0, nodes=["a", "b"]),
            NodeFailed(stage=1, node="c", attempts=1, duration_ms=5, error="x", cancelled=False),
            StageFailed(stage=1, failed=["c"], error="x"),
            RunFailed(stage=1, error="x"),
            CompensateRun(failed_stage=1),
            CompensationRecorded(
                order=0, stage=0, node="b", status=undo_b, duration_ms=9, error=b_error, attempts=3
            ),
            CompensationRecorded(order=1, stage=0, node="a", status="succeeded", duration_ms=1),
            RunCompensated(
                compensated=["a"] + (["b"] if undo_b == "succeeded" else []),
                failed=["b"] if undo_b == "failed" else [],
            ),
        ]
    )


def fold(sequence: list[Envelope]) -> RunView:
    view = None
    for event in sequence:
        view = apply(view, event)
    assert view is not None
    return view


def test_in_order_fold_gives_the_expected_view() -> None:
    view = fold(events())
    assert view.status == "Succeeded" and view.finished
    assert [s.status for s in view.stages] == ["succeeded", "succeeded"]
    assert {n: v.status for n, v in view.nodes.items()} == dict.fromkeys("abc", "succeeded")
    assert view.nodes["b"].attempts == 2
    assert view.duration_ms == 12.0


def test_any_arrival_order_and_repeats_give_the_same_view() -> None:
    ordered = events()
    expected = fold(ordered)
    rng = random.Random(20261122)
    print("seed 20261122")
    for _ in range(200):
        shuffled = ordered[:]
        rng.shuffle(shuffled)
        assert fold(shuffled) == expected
    assert fold(list(itertools.chain(ordered, ordered[::-1]))) == expected


@pytest.mark.parametrize(
    ("undo_b", "status"), [("succeeded", "Compensated"), ("failed", "CompensationFailed")]
)
def test_a_saga_ends_compensated_only_if_every_step_succeeded(undo_b: str, status: str) -> None:
    ordered = saga(undo_b)
    expected = fold(ordered)
    assert expected.status == status and expected.finished
    assert [(c.node, c.status) for c in expected.compensation] == [
        ("b", undo_b),
        ("a", "succeeded"),
    ]
    rng = random.Random(20261123)
    for _ in range(100):
        shuffled = ordered[:]
        rng.shuffle(shuffled)
        assert fold(shuffled) == expected


def test_a_denied_run_is_finished_and_names_who_what_and_the_policies() -> None:
    denied = RunDenied(
        topic="release.request",
        trigger_subject="stratum.events.acme.release.request",
        event_id="e",
        event_type="release.request",
        event_source="laptop",
        actor="source:laptop",
        inputs_hash="h",
        reason="release.request may only be triggered by a releaser",
        policy_ids=["releases-need-a-releaser"],
    )
    (event,) = enveloped([denied])
    view = apply(None, event)
    assert apply(view, event) == view  # folding it twice changes nothing
    assert (view.status, view.finished, view.duration_ms) == ("Denied", True, 0.0)
    assert (view.topic, view.actor, view.event_id) == ("release.request", "source:laptop", "e")
    assert view.error == "release.request may only be triggered by a releaser"
    assert view.policy_ids == ["releases-need-a-releaser"]
    assert view.stages == [] and view.nodes == {}


def nothing_to_undo() -> list[Envelope]:
    """The run's only node prints what is not JSON: nothing succeeded, so no saga."""
    error = "node a: output is not JSON: expected value at line 1 column 1"
    return enveloped(
        [
            ACCEPTED,
            RunPlanned(graph_version="v", stages=[["a"]]),
            ExecuteStage(stage=0, nodes=["a"]),
            NodeStarted(stage=0, node="a"),
            NodeFailed(stage=0, node="a", attempts=1, duration_ms=3, error=error, cancelled=False),
            StageFailed(stage=0, failed=["a"], error=error),
            RunFailed(stage=0, error=error, compensating=False),
        ]
    )


def test_a_run_with_nothing_to_undo_ends_failed_with_its_error() -> None:
    ordered = nothing_to_undo()
    expected = fold(ordered)
    assert (expected.status, expected.finished) == ("Failed", True)
    assert expected.error is not None and "output is not JSON" in expected.error
    assert expected.finished_at == iso(ordered[-1].time)
    assert expected.duration_ms == 6.0  # acceptance to the run.failed
    assert expected.compensation == []
    rng = random.Random(20261124)
    for _ in range(100):
        shuffled = ordered[:]
        rng.shuffle(shuffled)
        assert fold(shuffled) == expected
    assert fold(ordered + ordered[::-1]) == expected


def test_a_run_failed_that_a_saga_follows_does_not_end_the_run() -> None:
    before_the_saga = saga("succeeded")[:8]  # up to and including run.failed
    assert before_the_saga[-1].type == RunFailed.TYPE
    view = fold(before_the_saga)
    assert (view.status, view.finished, view.finished_at) == ("Failed", False, None)


def counted(tenant: str, status: str, metric: str = "stratum_runs_total") -> float:
    return metrics.REGISTRY.get_sample_value(metric, {"tenant": tenant, "status": status}) or 0.0


@pytest.mark.parametrize(
    ("sequence", "final"),
    [(nothing_to_undo(), "failed"), (saga("succeeded"), "compensated")],
    ids=["nothing to undo", "compensated"],
)
def test_every_failed_run_counts_failed_once_and_its_duration_at_its_end(
    sequence: list[Envelope], final: str
) -> None:
    """succeeded / (succeeded + failed) stays the success ratio: a run ending Failed and
    one compensated after it failed are each one `failed`; the duration is observed once,
    under the status the run ended in."""
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    view = None
    for event in (e.model_copy(update={"tenant": tenant}) for e in sequence + sequence):
        before, view = view, apply(view, event)
        count_transition(before, view)
    assert counted(tenant, "failed") == 1
    assert counted(tenant, final) == 1
    durations = {
        status: counted(tenant, status, "stratum_run_duration_seconds_count")
        for status in ("failed", "compensated")
    }
    assert durations == {s: 1.0 if s == final else 0.0 for s in durations}
