"""What `stratum show` and `stratum top` draw, without servers: run views folded by the
projector from events at known times, and metrics text from the real Prometheus metrics."""

from __future__ import annotations

import contextlib
import io
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Info, generate_latest
from prometheus_client.metrics import MetricWrapperBase
from rich.console import Console

from functions.projector.core import RunView, apply
from stratum.events import (
    CompensateRun,
    CompensationRecorded,
    NodeFailed,
    NodeStarted,
    NodeSucceeded,
    Payload,
    RunCompensated,
    RunFailed,
    RunPlanned,
    RunSucceeded,
    StageCompleted,
    StageFailed,
)
from stratum.telemetry import metrics
from stratum_host.cli.render import dead_letters_table, run_detail
from stratum_host.cli.timeline import BAR, bar, spans
from stratum_host.cli.top import Snapshot, parse, top_view
from tests.events import T0, accepted, run_events

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
ACCEPTED = accepted("crate.push")


def ok(stage: int, node: str, attempts: int, duration_ms: float) -> NodeSucceeded:
    return NodeSucceeded(
        stage=stage, node=node, attempts=attempts, duration_ms=duration_ms, bundle=f"/b/{node}"
    )


def fold(timed: list[tuple[int, Payload]]) -> RunView:
    """The projector's view of a run whose events happened `ms` after T0."""
    view = None
    for event in run_events(
        [payload for _, payload in timed], run_id="run-acme-1", at_ms=[at for at, _ in timed]
    ):
        view = apply(view, event)
    assert view is not None
    return view


def succeeded() -> RunView:
    return fold(
        [
            (0, ACCEPTED),
            (10, RunPlanned(graph_version="v1", stages=[["fmt", "lint"], ["build"]])),
            (100, NodeStarted(stage=0, node="fmt")),
            (100, NodeStarted(stage=0, node="lint")),
            (500, ok(stage=0, node="fmt", attempts=1, duration_ms=400)),
            (900, ok(stage=0, node="lint", attempts=2, duration_ms=800)),
            (905, StageCompleted(stage=0, nodes=["fmt", "lint"])),
            (1000, NodeStarted(stage=1, node="build")),
            (1950, ok(stage=1, node="build", attempts=1, duration_ms=950)),
            (1960, StageCompleted(stage=1, nodes=["build"])),
            (2000, RunSucceeded(outputs_hash="o")),
        ]
    )


def compensated() -> RunView:
    return fold(
        [
            (0, ACCEPTED),
            (10, RunPlanned(graph_version="v1", stages=[["stage-files"], ["publish"]])),
            (20, NodeStarted(stage=0, node="stage-files")),
            (220, ok(stage=0, node="stage-files", attempts=1, duration_ms=200)),
            (230, StageCompleted(stage=0, nodes=["stage-files"])),
            (300, NodeStarted(stage=1, node="publish")),
            (
                600,
                NodeFailed(
                    stage=1,
                    node="publish",
                    attempts=3,
                    duration_ms=300,
                    error="boom",
                    cancelled=False,
                ),
            ),
            (610, StageFailed(stage=1, failed=["publish"], error="boom")),
            (620, RunFailed(stage=1, error="publish failed")),
            (630, CompensateRun(failed_stage=1)),
            (
                800,
                CompensationRecorded(
                    order=0,
                    stage=0,
                    node="stage-files",
                    status="failed",
                    duration_ms=150,
                    error="undo refused",
                    attempts=3,
                ),
            ),
            (810, RunCompensated(compensated=[], failed=["stage-files"])),
        ]
    )


def text_of(renderable: Any, width: int = 120) -> str:
    console = Console(file=io.StringIO(), record=True, width=width, color_system=None)
    console.print(renderable)
    return console.export_text()


def in_order(text: str, *parts: str) -> bool:
    """`parts` all appear in `text`, each after the one before."""
    at = 0
    for part in parts:
        found = text.find(part, at)
        if found < 0:
            return False
        at = found + len(part)
    return True


def line_with(text: str, name: str) -> str:
    return next(line for line in text.splitlines() if f" {name} " in f" {line} ")


def test_spans_time_each_stage_and_node_from_the_runs_start() -> None:
    rows = {row.label: row for row in spans(succeeded().model_dump())}
    assert (rows["fmt"].start_ms, rows["fmt"].took_ms) == (100, 400)
    assert (rows["lint"].start_ms, rows["lint"].took_ms, rows["lint"].attempts) == (100, 800, 2)
    assert (rows["stage 0"].start_ms, rows["stage 0"].took_ms) == (100, 800)  # its nodes' span
    assert (rows["stage 1"].start_ms, rows["stage 1"].took_ms) == (1000, 950)


def test_show_draws_the_run_as_a_timeline_with_its_trace() -> None:
    view = succeeded().model_copy(update={"trace_id": TRACE}).model_dump()
    text = text_of(run_detail(view, width=40))
    assert in_order(
        text,
        "run-acme-1",
        "Succeeded",
        "2000 ms",
        f"trace: {TRACE}",
        "stage 0",
        "fmt",
        "lint",
        "stage 1",
        "build",
    )
    assert in_order(line_with(text, "fmt"), "succeeded", "+100 ms", "400 ms")
    assert in_order(line_with(text, "lint"), "+100 ms", "800 ms", "(2 attempts)")
    assert in_order(line_with(text, "build"), "+1000 ms", "950 ms")
    # bars to scale: build (1000 ms to 1950 ms of 2000) fills the second half of 40 cells
    build_bar = line_with(text, "build").split()[-1]
    assert build_bar == "·" * 20 + BAR * 19 + "·"


def test_show_says_when_nothing_traced_the_run() -> None:
    text = text_of(run_detail(succeeded().model_dump()))
    assert "trace: none (tracing off)" in text


def test_compensation_steps_follow_the_stages_and_errors_come_last() -> None:
    text = text_of(run_detail(compensated().model_dump()))
    assert in_order(
        text,
        "CompensationFailed",
        "error: publish failed",
        "stage 0",
        "stage-files",
        "stage 1",
        "publish",
        "compensation (reverse order)",
        "1. stage-files (stage 0)",
        "publish: boom",
        "compensate stage-files: undo refused",
    )
    # the undo ended at 800 ms after taking 150 ms: it started at +650 ms
    assert in_order(line_with(text, "1."), "failed", "+650 ms", "150 ms")


def test_an_error_the_headline_already_gives_is_not_repeated() -> None:
    view = compensated().model_dump()
    view["error"] = view["nodes"]["publish"]["error"] = "node publish: exit code 1"
    text = text_of(run_detail(view))
    assert text.count("node publish: exit code 1") == 1
    assert "compensate stage-files: undo refused" in text


def test_a_running_node_is_drawn_up_to_now() -> None:
    view = fold(
        [
            (0, ACCEPTED),
            (10, RunPlanned(graph_version="v1", stages=[["slow"]])),
            (100, NodeStarted(stage=0, node="slow")),
        ]
    ).model_dump()
    (stage, slow) = spans(view, now=T0 + timedelta(milliseconds=1100))
    assert (slow.status, slow.start_ms, slow.took_ms, slow.open) == ("running", 100, 1000, True)
    assert stage.open and stage.took_ms == 1000
    text = text_of(run_detail(view, now=T0 + timedelta(milliseconds=1100), width=11))
    assert in_order(line_with(text, "slow"), "running", "+100 ms", "1000 ms…", "·" + BAR * 10)


@pytest.mark.parametrize(
    ("start", "took", "drawn"),
    [
        (None, None, "··········"),  # not started: the track only
        (0, 1000, BAR * 10),
        (0, 1, BAR + "·" * 9),  # a started span shows at least one cell
        (500, 250, "·····" + BAR * 3 + "··"),  # every cell it touches
        (999, 500, "·········" + BAR),  # never past the end
    ],
)
def test_bars_are_width_bounded_and_to_scale(
    start: float | None, took: float | None, drawn: str
) -> None:
    assert bar(start, took, 1000, 10) == drawn


@pytest.fixture()
def labels() -> Iterator[tuple[str, str]]:
    """A tenant and a function no other test uses, removed from the registry afterwards."""
    tenant, function = f"t-{uuid.uuid4().hex[:8]}", f"fn-{uuid.uuid4().hex[:8]}"
    yield tenant, function
    removals: list[tuple[MetricWrapperBase, tuple[str, ...]]] = [
        (metrics.RUNS, (tenant, s)) for s in ("accepted", "succeeded", "compensation_failed")
    ]
    removals += [(metrics.MESSAGES, (function, o)) for o in ("acked", "retried", "dead_lettered")]
    removals += [
        (metrics.QUEUE_DEPTH, (function,)),
        (metrics.QUEUE_IN_FLIGHT, (function,)),
        (metrics.DEAD_LETTERS, (function, tenant)),
        (metrics.EVENTS_DENIED, (tenant, metrics.DENIED_POLICY)),
        (metrics.COMPENSATIONS, (tenant, "undo", "succeeded")),
    ]
    for metric, values in removals:
        with contextlib.suppress(KeyError):  # a test that failed early never made it
            metric.remove(*values)


def scrape() -> Snapshot:
    return parse(generate_latest(metrics.REGISTRY).decode())


def test_top_folds_the_metrics_text_into_counts_and_queues(labels: tuple[str, str]) -> None:
    tenant, function = labels
    before = scrape()
    metrics.RUNS.labels(tenant, "accepted").inc(3)
    metrics.RUNS.labels(tenant, "succeeded").inc(2)
    metrics.RUNS.labels(tenant, "compensation_failed").inc()
    metrics.QUEUE_DEPTH.labels(function).set(7)
    metrics.QUEUE_IN_FLIGHT.labels(function).set(2)
    metrics.MESSAGES.labels(function, "acked").inc(5)
    metrics.MESSAGES.labels(function, "retried").inc()
    metrics.MESSAGES.labels(function, "dead_lettered").inc()
    metrics.DEAD_LETTERS.labels(function, tenant).inc()
    metrics.EVENTS_DENIED.labels(tenant, metrics.DENIED_POLICY).inc(4)
    metrics.COMPENSATIONS.labels(tenant, "undo", "succeeded").inc()
    snap = scrape()

    assert snap.runs[tenant] == {"accepted": 3, "succeeded": 2, "compensation_failed": 1}
    queue = snap.queues[function]
    assert (queue.waiting, queue.in_flight, queue.dead_letters) == (7, 2, 1)
    assert queue.settled == {"acked": 5, "retried": 1, "dead_lettered": 1}
    policy = metrics.DENIED_POLICY
    assert snap.denied[policy] - before.denied.get(policy, 0) == 4
    assert snap.compensations["succeeded"] - before.compensations.get("succeeded", 0) == 1
    assert snap.run_totals()["accepted"] - before.run_totals().get("accepted", 0) == 3

    text = text_of(top_view(snap, "http://stratum"), width=200)
    # statuses in run-life order whatever their spelling; the function's queue row
    assert in_order(text, "accepted", "succeeded", "compensation_failed", "Queues")
    assert in_order(line_with(text, tenant), "3", "2", "1")
    # by column: other tests in this process may have made more outcome columns appear
    header = line_with(text, "in flight").replace("in flight", "in_flight")
    header = header.replace("dead letters", "dead_letters")
    row = dict(zip(header.split(), line_with(text, function).split(), strict=True))
    assert row["function"] == function
    assert (row["waiting"], row["in_flight"], row["acked"], row["retried"]) == ("7", "2", "5", "1")
    assert row["dead_letters"] == "1"


def test_top_reads_the_graph_version_and_tolerates_an_empty_scrape() -> None:
    registry = CollectorRegistry()
    Info("stratum_graph", "The workflow graph version in use", registry=registry).info(
        {"version": "g-42"}
    )
    assert parse(generate_latest(registry).decode()).graph_version == "g-42"
    empty = parse("")
    assert empty == Snapshot() and "graph ?" in text_of(top_view(empty))


def test_a_dead_letter_says_why_it_was_given_up_on() -> None:
    letter = {"function": "planner", "subject": "s", "error": "boom", "deliveries": 10}
    letters = [
        {**letter, "id": "dl-retried"},
        {**letter, "id": "dl-invalid", "invalid": True, "deliveries": 1},
        {**letter, "id": "dl-permanent", "permanent": True, "deliveries": 1},
    ]
    console = Console(file=io.StringIO(), record=True, width=200, color_system=None)
    console.print(dead_letters_table(letters))
    lines = {line.split()[0]: line for line in console.export_text().splitlines() if "dl-" in line}
    assert " 10 " in lines["dl-retried"]
    assert "invalid" in lines["dl-invalid"] and "permanent" not in lines["dl-invalid"]
    assert "permanent (1)" in lines["dl-permanent"]
