"""`POST /events/{tenant}`: a CloudEvent over HTTP, for publishers that do not speak NATS.

The request is a CloudEvent in binary mode (`ce-*` headers, the data as the body) or
structured mode (the JSON event as the body), exactly as it would be on NATS. It goes on
the tenant's event subject `<prefix>.events.<tenant>.<type>` unchanged — body, `ce-*`,
signature and `traceparent` headers — with the event id as `Nats-Msg-Id`, and ingest
handles it like any other: the same checks, the same run (the run id derives from tenant
and event id, so posting again is the same run).

NATS admits a publisher by its NKey before it may publish; HTTP has no such door, so with
signatures required the ingress checks the event's signature first (the publisher's key,
its tenant, the time window): an unsigned, forged or stale event never reaches the bus and
gets 401 saying why. Answers 202 `{run_id, event_id, subject}`; 400 names what is wrong
with an event that cannot even be routed (no type or id, a bad topic, not JSON).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from stratum.bus.subjects import Subjects
from stratum.errors import InvalidEventError, UnverifiedEventError
from stratum.events import json_object
from stratum.ids import run_id
from stratum.store import PublisherRecord
from stratum.telemetry import metrics
from stratum.trust.publisher_auth import SignatureRules, claimed_key, verify_publisher
from stratum.trust.signing import PUBLISHER_HEADER, SIGNATURE_HEADER, SIGNED_AT_HEADER

log = logging.getLogger("stratum.api.ingress")
# what travels on with the event besides the `ce-*` attributes
PASSED_ON = (
    "content-type",
    "traceparent",
    "tracestate",
    PUBLISHER_HEADER.lower(),
    SIGNED_AT_HEADER.lower(),
    SIGNATURE_HEADER.lower(),
)
CANONICAL = {name.lower(): name for name in (PUBLISHER_HEADER, SIGNED_AT_HEADER, SIGNATURE_HEADER)}
MAX_BODY_BYTES = 1024 * 1024


class RoutingError(ValueError):
    """The request cannot be put on any subject: what is missing or wrong."""


@dataclass(frozen=True)
class Routed:
    """Where an HTTP CloudEvent goes on NATS, and with which headers."""

    subject: str
    event_id: str
    headers: dict[str, str]


def route(subjects: Subjects, tenant: str, headers: dict[str, str], body: bytes) -> Routed:
    """The subject and NATS headers of an HTTP CloudEvent (`headers` lower-cased). Pure:
    only what routing needs is checked here; ingest checks the rest."""
    binary = "ce-specversion" in headers
    if binary:
        event_type, event_id = headers.get("ce-type", ""), headers.get("ce-id", "")
    else:
        try:
            document = json_object(body)
        except InvalidEventError as error:
            raise RoutingError(str(error)) from None
        event_type, event_id = str(document.get("type") or ""), str(document.get("id") or "")
    missing = [name for name, value in (("type", event_type), ("id", event_id)) if not value]
    if missing:
        mode = "ce-" if binary else ""
        raise RoutingError(f"no {' or '.join(mode + m for m in missing)}: cannot route it")
    try:
        subject = subjects.event(tenant, event_type)
        subjects.split_event_subject(subject)
    except ValueError as error:
        raise RoutingError(str(error)) from None
    passed = {
        CANONICAL.get(name, name): value
        for name, value in headers.items()
        if name.startswith("ce-") or name in PASSED_ON
    }
    return Routed(subject, event_id, passed | {"Nats-Msg-Id": event_id})


PublisherLookup = Callable[[str], Awaitable[PublisherRecord | None]]


def ingress_routes(
    subjects: Subjects, jetstream: Any, rules: SignatureRules, publisher_by_key: PublisherLookup
) -> list[Route]:
    async def receive(request: Request) -> JSONResponse:
        tenant = request.path_params["tenant"]
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            return JSONResponse({"error": f"body over {MAX_BODY_BYTES} bytes"}, status_code=413)
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            routed = route(subjects, tenant, headers, body)
        except RoutingError as error:
            metrics.EVENTS_DENIED.labels(tenant, metrics.DENIED_INVALID).inc()
            return JSONResponse({"error": str(error)}, status_code=400)
        if rules.required:
            key = claimed_key(routed.headers)
            try:
                verify_publisher(
                    routed.headers,
                    routed.subject,
                    body,
                    tenant,
                    await publisher_by_key(key) if key else None,
                    now_ms=int(time.time() * 1000),
                    window_seconds=rules.window_seconds,
                )
            except UnverifiedEventError as error:
                metrics.EVENTS_DENIED.labels(tenant, metrics.DENIED_UNVERIFIED).inc()
                log.warning(
                    "event refused at the HTTP ingress",
                    extra={"tenant": tenant, "subject": routed.subject, "reason": str(error)},
                )
                return JSONResponse({"error": str(error)}, status_code=401)
        await jetstream.publish(routed.subject, body, headers=routed.headers)
        return JSONResponse(
            {
                "run_id": run_id(tenant, routed.event_id),
                "event_id": routed.event_id,
                "subject": routed.subject,
            },
            status_code=202,
        )

    return [Route("/events/{tenant}", receive, methods=["POST"])]
