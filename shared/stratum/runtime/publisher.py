"""Publishing to JetStream with de-duplication ids."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol

from nats.js.client import JetStreamContext

from stratum.bus.subjects import Subjects
from stratum.events import Envelope
from stratum.telemetry import tracing
from stratum.telemetry.metrics import EVENTS_PUBLISHED

# a message published again names the first one here: its event id, and what handlers
# look up as the cause of what it already made happen
ORIGINAL_MSG_ID = "Stratum-Original-Msg-Id"
REDRIVE_HEADER = "Stratum-Redrive"
TENANT_HEADER = "Stratum-Tenant"


class Announcer(Protocol):
    """Where a function's events go: the bus (`Publisher`), or an HTTP sink under
    Knative (`stratum.runtime.http_adapter.SinkPublisher`)."""

    subjects: Subjects

    async def publish(self, event: Envelope) -> None: ...

    async def publish_all(self, events: Sequence[Envelope]) -> None: ...


class Publisher:
    """Publishes envelopes on their derived subjects; the event id is the `Nats-Msg-Id`."""

    def __init__(self, jetstream: JetStreamContext, subjects: Subjects) -> None:
        self._js = jetstream
        self.subjects = subjects

    async def publish(self, event: Envelope) -> None:
        """Publish in a PRODUCER span whose context travels in the headers; counted
        (stratum_events_published_total) once JetStream has acknowledged it."""
        subject = self.subjects.internal(event.type)
        headers = {
            "Nats-Msg-Id": event.id,
            "Stratum-Run-Id": event.runid,
            TENANT_HEADER: event.tenant,
        }
        await self._send(subject, event, headers)

    async def redrive(self, event: Envelope, count: int) -> None:
        """Publish a recorded event again, past JetStream's duplicate window: a fresh
        `Nats-Msg-Id`, and `Stratum-Redrive` so handlers can tell the executions apart."""
        subject = self.subjects.internal(event.type)
        headers = {
            "Nats-Msg-Id": f"{event.id}.redrive.{count}",
            "Stratum-Run-Id": event.runid,
            TENANT_HEADER: event.tenant,
            ORIGINAL_MSG_ID: event.id,
            REDRIVE_HEADER: str(count),
        }
        await self._send(subject, event, headers)

    async def _send(self, subject: str, event: Envelope, headers: dict[str, str]) -> None:
        with tracing.publishing(subject, headers, event.id):
            await self._js.publish(subject, event.to_bytes(), headers=headers)
        EVENTS_PUBLISHED.labels(event.type).inc()

    async def publish_all(self, events: Sequence[Envelope]) -> None:
        """Publish together: one round trip of acks, not one per event. The PUBs leave in
        list order (each is written before the next starts), so the stream keeps it."""
        await asyncio.gather(*(self.publish(event) for event in events))
