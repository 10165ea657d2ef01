"""One trace per run, across every hop: spans exported to an in-memory exporter while real
runs go through all five functions (real nats-server, SurrealDB, nu).

The workflow (written per test): stage 0 runs `a` and `b`, which output the TRACEPARENT
their script received; stage 1 runs `c`, which fails when the event says so, and then
`a` and `b` are compensated. The publisher sends a `traceparent` of its own, so the whole
run must join the publisher's trace.
"""

from __future__ import annotations

import io
import logging
import secrets
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import pytest_asyncio
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from stratum.clock import iso, utc_now
from stratum.config import Settings
from stratum.ids import run_id
from stratum.telemetry.logs import JsonFormatter
from tests.conftest import eventually, listening, make_settings
from tests.e2e.conftest import Harness, running

WORKFLOW = """
let { schema, .. } = import "stratum.ncl" in
{
  nodes = [
    { id = "a", trigger = "traced.go", produces = ["a-done"], handler = "traced.nu",
      compensate = "undo.nu" },
    { id = "b", trigger = "traced.go", produces = ["b-done"], handler = "traced.nu",
      compensate = "undo.nu" },
    { id = "c", trigger = "traced.go", consumes = ["a-done", "b-done"], handler = "last.nu" },
  ],
  capabilities = {
    "a-done" = schema.object { traceparent = schema.string },
    "b-done" = schema.object { traceparent = schema.string },
  },
}
"""

TRACED = """
def main [] {
    let node = $env.STRATUM_NODE
    {} | insert $"($node)-done" {traceparent: ($env.TRACEPARENT? | default "")} | to json -r
}
"""

LAST = """
def main [] {
    let input = ($in | from json)
    if ($input.event | get -o fail | default false) {
        print -e "c: failing on purpose"
        exit 1
    }
    sleep (($input.event | get -o nap_ms | default 0) * 1ms)
    {} | to json -r
}
"""

UNDO = """
def main [] { {undone: $env.STRATUM_NODE} | to json -r }
"""


def definitions(tmp_path: Path) -> str:
    folder = tmp_path / "defs"
    folder.mkdir()
    for name, text in {
        "traced.ncl": WORKFLOW,
        "traced.nu": TRACED,
        "last.nu": LAST,
        "undo.nu": UNDO,
    }.items():
        (folder / name).write_text(text)
    return str(folder)


@pytest.fixture()
def settings(tmp_path: Path, nats_url: str) -> Settings:
    return make_settings(tmp_path, nats_url, definitions=definitions(tmp_path))


@pytest_asyncio.fixture(loop_scope="session")
async def traced(settings: Settings, spans: InMemorySpanExporter) -> AsyncIterator[Harness]:
    async with running(settings, http=False) as harness:
        yield harness


@pytest.fixture()
def json_logs() -> Iterator[io.StringIO]:
    """What Stratum logs meanwhile, as `stratum up` writes it."""
    lines = io.StringIO()
    handler = logging.StreamHandler(lines)
    handler.setFormatter(JsonFormatter())
    with listening("", handler):  # the root logger: every line
        yield lines


async def emit_traced(harness: Harness, data: dict[str, Any]) -> tuple[str, str, str]:
    """Publish with a publisher's own `traceparent`: (run id, its trace id, its span id)."""
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    ident = str(uuid.uuid4())
    body = {
        "specversion": "1.0",
        "id": ident,
        "source": "tests",
        "type": "traced.go",
        "time": iso(utc_now()),
        "datacontenttype": "application/json",
        "data": data,
    }
    await harness.nc.jetstream().publish(
        harness.subjects.event("acme", "traced.go"),
        orjson.dumps(body),
        headers={"traceparent": f"00-{trace_id}-{span_id}-01"},
    )
    return run_id("acme", ident), trace_id, span_id


def hexid(value: int, width: int) -> str:
    return format(value, f"0{width}x")


def of_trace(exporter: InMemorySpanExporter, trace_id: str) -> list[ReadableSpan]:
    return [
        s
        for s in exporter.get_finished_spans()
        if s.context is not None and hexid(s.context.trace_id, 32) == trace_id
    ]


def group(settings: Settings, function: str) -> str:
    return f"{settings.subject_prefix.replace('.', '-')}-{function}"


async def whole_trace(
    exporter: InMemorySpanExporter, trace_id: str, settings: Settings, functions: list[str]
) -> list[ReadableSpan]:
    """The run's spans once every function's last message span has ended."""
    groups = {group(settings, f) for f in functions}

    async def probe() -> list[ReadableSpan] | None:
        found = of_trace(exporter, trace_id)
        seen = {
            (s.attributes or {}).get("messaging.consumer.group.name")
            for s in found
            if s.kind == SpanKind.CONSUMER
        }
        return found if groups <= seen else None

    result: list[ReadableSpan] = await eventually(probe, timeout=30)
    return result


def check_hops(found: list[ReadableSpan], publisher_span: str) -> None:
    """The messaging conventions, and one connected tree hanging off the publisher."""
    by_id = {hexid(s.context.span_id, 16): s for s in found if s.context is not None}
    for span in found:
        assert span.parent is not None, f"{span.name} is a root: the run left the trace"
        parent = hexid(span.parent.span_id, 16)
        assert parent in by_id or parent == publisher_span, f"{span.name}: parent not in trace"
        attributes = span.attributes or {}
        if span.kind == SpanKind.CONSUMER:
            subject = span.name.removeprefix("process ")
            assert span.name.startswith("process ")
            assert attributes["messaging.system"] == "nats"
            assert attributes["messaging.destination.name"] == subject
            assert attributes["messaging.operation.name"] == "process"
            assert attributes["messaging.consumer.group.name"]
            # a child of what its publisher sent, and linked to it
            assert [hexid(link.context.span_id, 16) for link in span.links] == [parent]
            if parent != publisher_span:  # Stratum's own events carry their id
                assert attributes["messaging.message.id"]
                producer = by_id[parent]
                assert producer.kind == SpanKind.PRODUCER
                assert producer.name == f"publish {subject}"
                assert (producer.attributes or {})["messaging.message.id"] == attributes[
                    "messaging.message.id"
                ] or attributes.get("stratum.delivery", 1) != 1
        if span.kind == SpanKind.PRODUCER:
            assert span.name.startswith("publish ")
            assert attributes["messaging.system"] == "nats"
            assert attributes["messaging.destination.name"] == span.name.removeprefix("publish ")
            assert attributes["messaging.message.id"]


def named(found: list[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [s for s in found if s.name == name]


def parent_of(found: list[ReadableSpan], span: ReadableSpan) -> ReadableSpan:
    assert span.parent is not None
    return next(
        s for s in found if s.context is not None and s.context.span_id == span.parent.span_id
    )


async def test_a_run_is_one_trace_joined_to_the_publishers(
    traced: Harness,
    spans: InMemorySpanExporter,
    settings: Settings,
    json_logs: io.StringIO,
) -> None:
    run, trace_id, publisher_span = await emit_traced(traced, {})
    view = await traced.finished(run)
    assert view["status"] == "Succeeded", view.get("error")
    assert view["trace_id"] == trace_id  # `stratum show` names the trace

    found = await whole_trace(
        spans, trace_id, settings, ["ingest", "planner", "stage-executor", "projector"]
    )
    check_hops(found, publisher_span)
    # every span that names the run is in the publisher's trace
    everywhere = [
        s for s in spans.get_finished_spans() if (s.attributes or {}).get("stratum.run_id") == run
    ]
    assert everywhere and all(s in found for s in everywhere)

    ingest = [s for s in found if s.name.startswith("process ") and "acme" in s.name]
    assert len(ingest) == 1 and hexid(ingest[0].parent.span_id, 16) == publisher_span  # type: ignore[union-attr]

    (plan,) = named(found, "plan")
    assert (plan.attributes or {})["stratum.stages"] == 2
    assert (parent_of(found, plan).attributes or {})["messaging.consumer.group.name"] == group(
        settings, "planner"
    )

    stages = {s.name: s for s in found if s.name.startswith("stage ")}
    assert set(stages) == {"stage 0", "stage 1"}
    for node, stage in (("a", "stage 0"), ("b", "stage 0"), ("c", "stage 1")):
        (execute,) = named(found, f"execute {node}")
        attributes = execute.attributes or {}
        assert attributes["stratum.node.id"] == node
        assert attributes["stratum.node.attempt"] == 1
        assert attributes["process.exit.code"] == 0
        assert attributes["stratum.node.status"] == "succeeded"
        assert attributes["stratum.node.duration_ms"] > 0
        assert parent_of(found, execute) is stages[stage]

    # the script saw its own attempt's span as TRACEPARENT
    outputs = await traced.store.capabilities(run)
    for node in ("a", "b"):
        (execute,) = named(found, f"execute {node}")
        span_id = hexid(execute.context.span_id, 16)  # type: ignore[union-attr]
        assert outputs[f"{node}-done"]["traceparent"] == f"00-{trace_id}-{span_id}-01"

    writes = named(found, "surrealdb transaction")
    assert writes and all((w.attributes or {})["db.system.name"] == "surrealdb" for w in writes)

    # log lines are JSON and name the span they were written in
    lines = [orjson.loads(line) for line in json_logs.getvalue().splitlines()]
    about_run = [line for line in lines if line.get("run_id") == run]
    span_ids = {hexid(s.context.span_id, 16) for s in found if s.context is not None}
    assert {"run planned", "node a succeeded", "run succeeded"} <= {
        line["msg"] for line in about_run
    }
    for line in about_run:
        assert line["trace_id"] == trace_id
        assert line["span_id"] in span_ids
        assert line["ts"].endswith("Z") or line["ts"].endswith("+00:00")
    node_lines = [line for line in about_run if line["msg"].startswith("node ")]
    assert {line["node"] for line in node_lines} == {"a", "b", "c"}


async def test_compensation_stays_in_the_runs_trace(
    traced: Harness, spans: InMemorySpanExporter, settings: Settings
) -> None:
    run, trace_id, publisher_span = await emit_traced(traced, {"fail": True})
    view = await traced.finished(run)
    assert view["status"] == "Compensated"

    found = await whole_trace(
        spans,
        trace_id,
        settings,
        ["ingest", "planner", "stage-executor", "compensator", "projector"],
    )
    check_hops(found, publisher_span)

    (failed,) = named(found, "execute c")
    assert (failed.attributes or {})["process.exit.code"] == 1
    assert failed.status.status_code == StatusCode.ERROR
    assert named(found, "stage 1")[0].status.status_code == StatusCode.ERROR

    compensator = group(settings, "compensator")
    for node in ("a", "b"):
        (step,) = named(found, f"compensation step {node}")
        assert (step.attributes or {})["stratum.compensation.status"] == "succeeded"
        assert (parent_of(found, step).attributes or {})[
            "messaging.consumer.group.name"
        ] == compensator
        (attempt,) = named(found, f"compensate {node}")
        assert parent_of(found, attempt) is step
        assert (attempt.attributes or {})["process.exit.code"] == 0
    # the step spans follow the saga's recorded order
    steps = sorted(
        (s for s in found if s.name.startswith("compensation step ")),
        key=lambda s: s.start_time or 0,
    )
    recorded = [step["node"] for step in sorted(view["compensation"], key=lambda s: s["order"])]
    assert [s.name.removeprefix("compensation step ") for s in steps] == recorded


async def test_a_queued_run_keeps_its_own_trace_when_another_runs_end_admits_it(
    tmp_path: Path, nats_url: str, spans: InMemorySpanExporter
) -> None:
    """The planner admits a queued run while handling the end of the run before it (in
    that run's trace); the admitted run's planning and stages still belong to its own."""
    settings = make_settings(
        tmp_path,
        nats_url,
        definitions=definitions(tmp_path),
        tenant_limits={"acme": {"max_concurrent_runs": 1}},
    )
    async with running(settings, http=False) as harness:
        first, first_trace, _ = await emit_traced(harness, {"nap_ms": 1500})

        async def in_progress() -> bool:
            run = await harness.store.get_run(first)
            return bool(run and run["status"] in ("Planned", "Running"))

        await eventually(in_progress)
        second, second_trace, second_parent = await emit_traced(harness, {})
        assert (await harness.finished(first))["status"] == "Succeeded"
        view = await harness.finished(second)
        assert view["status"] == "Succeeded" and view["trace_id"] == second_trace
        history = [item["type"] for item in await harness.store.history(second)]
        assert "stratum.run.queued" in history, "the second run never waited"

        found = await whole_trace(
            spans, second_trace, settings, ["ingest", "planner", "stage-executor", "projector"]
        )
    check_hops(found, second_parent)
    assert named(found, "plan") and {"stage 0", "stage 1"} <= {s.name for s in found}
    assert {f"execute {node}" for node in "abc"} <= {s.name for s in found}
    # nothing of the second run's work landed in the first run's trace but its admission
    in_first = {
        s.name
        for s in of_trace(spans, first_trace)
        if (s.attributes or {}).get("stratum.run_id") == second
    }
    assert in_first <= {f"process {settings.subject_prefix}.run.admitted"}, in_first
