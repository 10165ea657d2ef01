"""Log lines written while a message is handled name its tenant and run."""

from __future__ import annotations

import logging

import orjson

from stratum.bus.subjects import Subjects
from stratum.runtime.function import Inbound
from stratum.runtime.handling import context_of as _context_of
from stratum.telemetry.logs import JsonFormatter, log_context

SUBJECTS = Subjects("stratum")


def test_internal_messages_name_their_tenant_and_run_from_headers() -> None:
    inbound = Inbound(
        subject="stratum.stage.execute",
        headers={"Stratum-Tenant": "acme", "Stratum-Run-Id": "run-1"},
        body=b"{}",
    )
    assert _context_of("planner", inbound, SUBJECTS) == {
        "function": "planner",
        "tenant": "acme",
        "run_id": "run-1",
    }


def test_a_publishers_event_names_the_tenant_of_its_subject() -> None:
    inbound = Inbound(subject="stratum.events.globex.crate.push", headers={}, body=b"{}")
    assert _context_of("ingest", inbound, SUBJECTS) == {"function": "ingest", "tenant": "globex"}


def test_every_line_in_the_context_carries_it_and_extras_still_win() -> None:
    record = logging.makeLogRecord({"msg": "hello", "levelname": "INFO", "name": "t"})
    record.__dict__["run_id"] = "run-explicit"
    token = log_context.set({"tenant": "acme", "run_id": "run-ctx"})
    try:
        line = orjson.loads(JsonFormatter().format(record))
    finally:
        log_context.reset(token)
    assert line["tenant"] == "acme" and line["run_id"] == "run-explicit"
    outside = orjson.loads(JsonFormatter().format(record))
    assert "tenant" not in outside


def test_a_line_names_the_span_it_was_written_in() -> None:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    from stratum.telemetry import tracing

    record = logging.makeLogRecord({"msg": "in a span", "levelname": "INFO", "name": "t"})
    tracing.use(TracerProvider())
    try:
        with tracing.span("work") as span:
            line = orjson.loads(JsonFormatter().format(record))
            context = span.get_span_context()
    finally:
        tracing.use(trace.get_tracer_provider())
    assert line["trace_id"] == format(context.trace_id, "032x")
    assert line["span_id"] == format(context.span_id, "016x")
    assert line["ts"].endswith("Z")  # UTC
    assert "trace_id" not in orjson.loads(JsonFormatter().format(record))


def test_fields_named_like_credentials_are_masked_whatever_they_hold() -> None:
    record = logging.makeLogRecord({"msg": "m", "levelname": "WARNING", "name": "t"})
    record.__dict__ |= {"vault_token": "s.abc", "seed": "SUAXYZ", "node": "build"}
    line = orjson.loads(JsonFormatter().format(record))
    assert line["vault_token"] == line["seed"] == "[redacted]"
    assert line["node"] == "build"


def test_a_terminal_gets_readable_lines() -> None:
    from stratum.telemetry.logs import ConsoleFormatter

    record = logging.makeLogRecord({"msg": "node a succeeded", "levelname": "INFO", "name": "t"})
    record.__dict__["attempts"] = 1
    token = log_context.set({"function": "stage-executor", "run_id": "run-1", "tenant": "acme"})
    try:
        text = ConsoleFormatter().format(record)
    finally:
        log_context.reset(token)
    assert "\n" not in text and not text.startswith("{")
    assert "INFO" in text and "stage-executor/run-1" in text and "node a succeeded" in text
    assert "tenant=acme" in text and "attempts=1" in text
