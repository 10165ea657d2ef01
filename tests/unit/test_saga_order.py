"""The compensator's pure parts: the order (every succeeded node, latest stage first,
reverse lexical), what a step and the saga's end announce, which steps are final, and how
a rerun is numbered."""

from __future__ import annotations

from datetime import UTC, datetime

from functions.compensator.core import Undone, compensated, ended, first_attempt, step
from stratum.events import CompensateRun, CompensationRecorded, Envelope, RunCompensated, emit
from stratum.runs.saga import undo_order

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_undo_order_is_the_mirror_of_the_plan_and_skips_unfinished_nodes() -> None:
    executions = {
        "fmt": {"stage": 0, "status": "succeeded"},
        "lint": {"stage": 0, "status": "succeeded"},
        "tag": {"stage": 1, "status": "succeeded"},
        "upload": {"stage": 1, "status": "succeeded"},
        "sign": {"stage": 1, "status": "cancelled"},
        "publish": {"stage": 2, "status": "failed"},
    }
    assert undo_order(executions) == [(1, "upload"), (1, "tag"), (0, "lint"), (0, "fmt")]


def test_nothing_succeeded_means_nothing_to_undo() -> None:
    assert undo_order({"a": {"stage": 0, "status": "failed"}}) == []


def command() -> Envelope:
    return emit(
        CompensateRun(failed_stage=1),
        cause="cause",
        run_id="run-1",
        tenant="acme",
        source="test",
        now=T0,
    )


def test_the_saga_names_its_failed_steps_and_each_step_its_attempts() -> None:
    steps = {
        "tag": {"status": "succeeded"},
        "upload": {"status": "failed"},
        "fmt": {"status": "skipped"},
    }
    final = compensated(command(), steps, T0).payload(RunCompensated)
    assert (final.compensated, final.failed) == (["tag"], ["upload"])

    done = Undone(status="failed", attempts=3, duration_ms=12.5, error="boom (after 3 attempts)")
    recorded = step(command(), 0, 1, "upload", done, T0).payload(CompensationRecorded)
    assert (recorded.node, recorded.status, recorded.attempts) == ("upload", "failed", 3)
    # a redelivery derives the same event id: JetStream drops the copy
    assert (
        step(command(), 0, 1, "upload", done, T0).id == step(command(), 0, 1, "upload", done, T0).id
    )


def test_only_ended_steps_are_final_and_a_rerun_gets_a_block_of_attempts() -> None:
    steps = {
        "tag": {"status": "succeeded"},
        "upload": {"status": "failed"},
        "fmt": {"status": "skipped"},
        "lint": {"status": "running"},  # its delivery died before it ended
    }
    assert set(ended(steps)) == {"tag", "upload", "fmt"}
    assert [first_attempt(n, retries=2) for n in (1, 2, 3)] == [1, 4, 7]
    assert [first_attempt(n, retries=0) for n in (0, 1, 2)] == [1, 1, 2]
