"""Ingest's validation of publishers' events: what is accepted, and the exact reason for
what is not. Pure: no servers."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from functions.ingest.core import MAX_BODY_BYTES, accept, parse_incoming
from stratum.bus.subjects import Subjects
from stratum.errors import InvalidEventError
from stratum.ids import run_id

SUBJECTS = Subjects("stratum")
GOOD = {
    "specversion": "1.0",
    "id": "e-1",
    "source": "ci",
    "type": "crate.push",
    "data": {"source": "x"},
}


def body(**changes: object) -> bytes:
    event = {**GOOD, **changes}
    return orjson.dumps({k: v for k, v in event.items() if v is not None})


def test_structured_event_is_parsed_with_tenant_and_topic_from_the_subject() -> None:
    event = parse_incoming("stratum.events.acme.crate.push", {}, body(), SUBJECTS)
    assert (event.tenant, event.topic, event.id, event.data) == (
        "acme",
        "crate.push",
        "e-1",
        {"source": "x"},
    )


def test_binary_mode_headers_are_accepted() -> None:
    headers = {
        "ce-specversion": "1.0",
        "ce-id": "e-2",
        "ce-source": "ci",
        "ce-type": "crate.push",
        "content-type": "application/json",
    }
    event = parse_incoming("stratum.events.acme.crate.push", headers, b'{"a": 1}', SUBJECTS)
    assert event.id == "e-2" and event.data == {"a": 1}


@pytest.mark.parametrize(
    ("subject", "payload", "reason"),
    [
        ("stratum.events.acme.crate.push", b"not json", "body is not JSON"),
        ("stratum.events.acme.crate.push", b"[1, 2]", "must be a CloudEvents JSON object"),
        ("stratum.events.acme.crate.push", body(id=None), "not a valid CloudEvent"),
        ("stratum.events.acme.crate.push", body(specversion="0.3"), "specversion must be 1.0"),
        ("stratum.events.acme.crate.push", body(data=[1, 2]), "data must be a JSON object"),
        ("stratum.events.acme.crate.push", body(tenant="other"), "differs from the subject"),
        ("stratum.events.acme", body(), "has no topic after the tenant"),
        ("stratum.events.ACME.crate.push", body(), "tenant 'ACME' must match"),
        ("other.events.acme.crate.push", body(), "is not under stratum.events."),
        ("stratum.events.acme.crate.push", b"{" + b" " * MAX_BODY_BYTES + b"}", "the limit is"),
        ("stratum.events.acme.crate.push", b'{"id": "\xff\xfe"}', "not valid UTF-8"),
        ("stratum.events..crate.push", body(), "tenant '' must match"),
    ],
)
def test_invalid_events_say_what_is_wrong(subject: str, payload: bytes, reason: str) -> None:
    with pytest.raises(InvalidEventError, match=reason):
        parse_incoming(subject, {}, payload, SUBJECTS)


def test_accepting_derives_the_run_id_from_tenant_and_event_id() -> None:
    event = parse_incoming("stratum.events.acme.crate.push", {}, body(), SUBJECTS)
    record, accepted = accept(event, actor="source:ci", now=datetime.now(UTC))
    _, accepted_again = accept(event, actor="source:ci", now=accepted.time)
    assert record["id"] == run_id("acme", "e-1") == accepted.runid
    assert accepted.id == accepted_again.id, "a redelivery must re-emit the same event id"
    assert len(record["inputs_hash"]) == 64
