"""Tracing off (no OTEL_* set): no span is made, yet a publisher's W3C trace context is
carried through a hop unchanged — to what the hop publishes, records and logs — and a
malformed one is dropped rather than passed on."""

from __future__ import annotations

import logging

import orjson
import pytest
from opentelemetry import trace

from stratum.telemetry import tracing
from stratum.telemetry.logs import JsonFormatter

PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture(autouse=True)
def off() -> None:
    tracing.use(trace.get_tracer_provider())  # the API's own provider: off


def test_a_hop_passes_the_publishers_context_on_unchanged() -> None:
    incoming = {"traceparent": PARENT, "tracestate": "vendor=1", "Nats-Msg-Id": "e1"}
    with tracing.processing("s", incoming, group="g", message_id="e1") as span:
        assert not span.is_recording()
        outgoing: dict[str, str] = {"Nats-Msg-Id": "e2"}
        with tracing.publishing("s.next", outgoing, "e2"):
            pass
        assert outgoing == {"Nats-Msg-Id": "e2", "traceparent": PARENT, "tracestate": "vendor=1"}
        assert tracing.current_headers() == {"traceparent": PARENT, "tracestate": "vendor=1"}
        assert tracing.trace_id() == "0af7651916cd43dd8448eb211c80319c"
        with tracing.span("stage 0") as inner:
            assert not inner.is_recording()
        record = logging.makeLogRecord({"msg": "m", "levelname": "INFO", "name": "t"})
        line = orjson.loads(JsonFormatter().format(record))
        assert (line["trace_id"], line["span_id"]) == (
            "0af7651916cd43dd8448eb211c80319c",
            "b7ad6b7169203331",
        )
    assert tracing.current_headers() == {} and tracing.trace_id() == ""


@pytest.mark.parametrize(
    "parent",
    [
        "garbage",
        "00-00000000000000000000000000000000-b7ad6b7169203331-01",
        "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
        "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
        PARENT + "\nInjected: header",
        PARENT + "\n",
    ],
)
def test_a_malformed_traceparent_is_not_passed_on(parent: str) -> None:
    with tracing.processing("s", {"traceparent": parent}, group="g", message_id="e"):
        outgoing: dict[str, str] = {}
        with tracing.publishing("s", outgoing, "e"):
            pass
    assert outgoing == {}


def test_a_recorded_context_is_resumed() -> None:
    with tracing.resumed({"traceparent": PARENT}):
        assert tracing.trace_id() == "0af7651916cd43dd8448eb211c80319c"
    with tracing.resumed({}):
        assert tracing.trace_id() == ""


def test_a_handler_may_adopt_another_runs_context_until_its_message_is_done() -> None:
    other = "00-11111111111111111111111111111111-2222222222222222-01"
    with tracing.processing("s", {"traceparent": PARENT}, group="g", message_id="e"):
        tracing.adopt({"traceparent": other})
        outgoing: dict[str, str] = {}
        with tracing.publishing("s", outgoing, "e"):
            pass
        assert outgoing == {"traceparent": other}
    assert tracing.current_headers() == {}
