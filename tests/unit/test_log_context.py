"""Log lines written while a message is handled name its tenant and run."""

from __future__ import annotations

import logging

import orjson

from stratum.logs import JsonFormatter, log_context
from stratum.runtime.function import Inbound
from stratum.runtime.jetstream import _context_of
from stratum.subjects import Subjects

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
