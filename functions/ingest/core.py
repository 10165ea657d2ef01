"""Ingest's decisions: is this a valid CloudEvent for a tenant, and what run does it start."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from cloudevents.core.bindings.http import HTTPMessage, from_http
from cloudevents.core.exceptions import BaseCloudEventException
from cloudevents.core.formats.json import JSONFormat

from stratum.bus.subjects import Subjects
from stratum.clock import iso
from stratum.errors import InvalidEventError
from stratum.events import Envelope, Payload, RunAccepted, RunDenied, emit, json_object
from stratum.ids import run_id

# under NATS's default 1 MiB max_payload with room for run.accepted, which carries the data
MAX_BODY_BYTES = 1024 * 1024 - 64 * 1024
SOURCE = "stratum/ingest"
REQUIRED_ATTRIBUTES = ("specversion", "id", "source", "type")


@dataclass(frozen=True)
class IncomingEvent:
    """A publisher's event, validated: CloudEvents 1.0 attributes plus tenant and topic."""

    subject: str
    tenant: str
    topic: str
    id: str
    type: str
    source: str
    data: Any


def parse_incoming(
    subject: str, headers: dict[str, str], body: bytes, subjects: Subjects
) -> IncomingEvent:
    """Validate one message; InvalidEventError says exactly what is wrong."""
    try:
        tenant, topic = subjects.split_event_subject(subject)
    except ValueError as error:
        raise InvalidEventError(str(error)) from None
    if len(body) > MAX_BODY_BYTES:
        raise InvalidEventError(f"body is {len(body)} bytes; the limit is {MAX_BODY_BYTES}")
    lowered = {key.lower(): value for key, value in headers.items()}
    binary = "ce-specversion" in lowered
    if not binary:
        document = json_object(body)
        present = set(document)
        version = document.get("specversion")
    else:
        present = {key.removeprefix("ce-") for key in lowered if key.startswith("ce-")}
        version = lowered["ce-specversion"]
    # checked here: the SDK would make up an id (and a time) for an event that has none,
    # and a made-up id defeats de-duplication
    missing = [name for name in REQUIRED_ATTRIBUTES if name not in present]
    if missing:
        raise InvalidEventError(
            f"not a valid CloudEvent: missing required attribute(s) {', '.join(missing)}"
        )
    # before the SDK: its 0.3 code paths fail on odd input with errors of their own
    if version != "1.0":
        raise InvalidEventError(f"specversion must be 1.0, got {version!r:.40}")
    try:
        event = from_http(HTTPMessage(headers=lowered if binary else {}, body=body), JSONFormat())
    except BaseCloudEventException as error:
        raise InvalidEventError(f"not a valid CloudEvent: {error}") from None
    except (ValueError, TypeError, UnicodeDecodeError, RecursionError) as error:
        # RecursionError: the SDK decodes a binary-mode JSON body with the standard
        # library, which a deeply nested body drives past the recursion limit
        raise InvalidEventError(f"not a valid CloudEvent: {error}") from None
    attributes = event.get_attributes()
    declared_tenant = attributes.get("tenant")
    if declared_tenant is not None and declared_tenant != tenant:
        raise InvalidEventError(
            f"tenant attribute {declared_tenant!r} differs from the subject's tenant {tenant!r}"
        )
    data = event.get_data()
    if isinstance(data, bytes | str):
        try:
            data = orjson.loads(data) if data else {}
        except orjson.JSONDecodeError:
            raise InvalidEventError("data is not JSON") from None
    elif data is not None:
        data = _portable(data)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InvalidEventError("data must be a JSON object")
    return IncomingEvent(
        subject=subject,
        tenant=tenant,
        topic=topic,
        id=str(attributes["id"]),
        type=str(attributes["type"]),
        source=str(attributes["source"]),
        data=data,
    )


def _portable(data: Any) -> Any:
    """`data` as the SDK decoded it (the standard library's json: integers of any size,
    NaN, lone surrogates, any depth), if orjson writes it back unchanged; the run record,
    the inputs hash and every event carry it."""
    try:
        same = orjson.loads(orjson.dumps(data)) == data
    except (TypeError, orjson.JSONDecodeError) as error:
        raise InvalidEventError(f"data is not portable JSON: {error}") from None
    if not same:
        raise InvalidEventError("data is not portable JSON: NaN or infinity")
    return data


def _run_record(incoming: IncomingEvent, actor: str) -> dict[str, Any]:
    """What every run records of the event that started (or tried to start) it."""
    return {
        "id": run_id(incoming.tenant, incoming.id),
        "tenant": incoming.tenant,
        "topic": incoming.topic,
        "trigger_subject": incoming.subject,
        "event_id": incoming.id,
        "event_type": incoming.type,
        "event_source": incoming.source,
        "event_data": incoming.data,
        "actor": actor,
        "inputs_hash": _inputs_hash(incoming.data),
    }


def _trigger(incoming: IncomingEvent, record: dict[str, Any]) -> dict[str, Any]:
    """What both a RunAccepted and a RunDenied say about the event and who sent it."""
    return {
        "topic": incoming.topic,
        "trigger_subject": incoming.subject,
        "event_id": incoming.id,
        "event_type": incoming.type,
        "event_source": incoming.source,
        "actor": record["actor"],
        "inputs_hash": record["inputs_hash"],
    }


def _announce(payload: Payload, record: dict[str, Any], now: datetime) -> Envelope:
    run = str(record["id"])
    return emit(payload, cause=run, run_id=run, tenant=record["tenant"], source=SOURCE, now=now)


def accept(
    incoming: IncomingEvent, *, actor: str, now: datetime
) -> tuple[dict[str, Any], Envelope]:
    """The run record to create and the RunAccepted event announcing it."""
    record = _run_record(incoming, actor) | {"accepted_at": iso(now)}
    event = _announce(
        RunAccepted(**_trigger(incoming, record), event_data=incoming.data),
        record,
        now,
    )
    return record, event


def deny(
    incoming: IncomingEvent, *, actor: str, reason: str, policy_ids: list[str], now: datetime
) -> tuple[dict[str, Any], Envelope]:
    """The run record of a refused trigger (Denied, finished: nothing will run) and the
    RunDenied audit event announcing it. The event's data stays in the record only."""
    record = _run_record(incoming, actor) | {
        "decision": "deny",
        "reason": reason,
        "policy_ids": policy_ids,
        "finished_at": iso(now),
    }
    event = _announce(
        RunDenied(**_trigger(incoming, record), reason=reason, policy_ids=policy_ids),
        record,
        now,
    )
    return record, event


def _inputs_hash(data: Any) -> str:
    return hashlib.sha256(orjson.dumps(data, option=orjson.OPT_SORT_KEYS)).hexdigest()


def rejection(subject: str, body: bytes, reason: str, now: datetime) -> dict[str, Any]:
    """What is recorded about a message that is not a valid event (never its full body)."""
    digest = hashlib.sha256(subject.encode() + b"\x00" + body).hexdigest()
    return {
        "id": digest[:32],
        "subject": subject,
        "reason": reason,
        "body_sha256": hashlib.sha256(body).hexdigest(),
        "body_bytes": len(body),
        "at": iso(now),
    }
