"""What every adapter does around one message, however it arrived (JetStream, HTTP).

`Handling` holds a function's per-run locks and runs its handler the one way
(`run_steps`: parse -> load -> decide -> commit): in the
message's log context and CONSUMER span, one message of a run at a time, re-announcing
what an earlier handling caused when the message was seen before. The adapter decides
what the outcome means for delivery (ack/nak/term, or an HTTP status).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from opentelemetry.trace import Span

from stratum.bus.subjects import Subjects
from stratum.clock import utc_now
from stratum.events import Envelope
from stratum.keyed_lock import KeyedLocks
from stratum.runtime.function import Function, Handler, Inbound
from stratum.runtime.publisher import ORIGINAL_MSG_ID, TENANT_HEADER, Announcer
from stratum.store import StaleWriteError
from stratum.telemetry import metrics, tracing
from stratum.telemetry.logs import log_context


class EventLog(Protocol):
    """The part of the store that says what a message already caused."""

    async def events_caused_by(self, cause: str) -> list[Envelope]: ...


@dataclass
class Handled:
    """One message being handled: its span, and how it was settled (`outcome`, one of
    acked, retried, dead_lettered; anything but acked marks the span failed)."""

    span: Span
    outcome: str = "acked"


@dataclass
class Handling:
    """Runs one function's handler per message, the same for every adapter."""

    function: Function
    store: EventLog
    announcer: Announcer
    group: str
    _locks: KeyedLocks = field(default_factory=KeyedLocks)

    @contextlib.contextmanager
    def processing(self, inbound: Inbound) -> Iterator[Handled]:
        """The message's log context and CONSUMER span (from its `traceparent`), and
        the settled/duration metrics once the adapter set the outcome."""
        context = context_of(self.function.name, inbound, self.announcer.subjects)
        log_context.set(context)
        began = time.perf_counter()
        with tracing.processing(
            inbound.subject,
            inbound.headers,
            group=self.group,
            message_id=message_id(inbound),
            attributes=span_attributes(context, inbound.delivery),
        ) as span:
            handled = Handled(span)
            try:
                yield handled
            finally:
                if handled.outcome != "acked":
                    tracing.failed(span, handled.outcome)
        metrics.MESSAGES.labels(self.function.name, handled.outcome).inc()
        metrics.HANDLER_DURATION.labels(self.function.name).observe(time.perf_counter() - began)

    async def handle(self, inbound: Inbound) -> Sequence[Envelope]:
        """The events the message causes, committed to the database; one message of a
        run at a time (`Function.key`). Raises what the handler raises, except
        StaleWriteError: handled before, its events are returned again."""
        key = self.function.key(inbound) if self.function.key is not None else None
        if key is None:
            return await self._handle(inbound)
        async with self._locks.hold(key):
            return await self._handle(inbound)

    async def _handle(self, inbound: Inbound) -> Sequence[Envelope]:
        if inbound.delivery > 1 or ORIGINAL_MSG_ID in inbound.headers:
            # an earlier handling may have committed events and died before publishing
            # them; a new handling may cause different ones (a node run again), so the
            # first ones are announced now or never. Repeats are dropped by the bus.
            await self.announcer.publish_all(await self.store.events_caused_by(message_id(inbound)))
        try:
            return await run_steps(self.function.runnable, inbound)
        except StaleWriteError:
            # handled before (a redelivery): re-announce what it caused; the bus drops repeats
            return await self.store.events_caused_by(message_id(inbound))


async def run_steps(handler: Handler[Any, Any, Any], inbound: Inbound) -> Sequence[Envelope]:
    """The one path of a message through a function: validate -> load state -> decide ->
    commit (state and events in one transaction). The adapter publishes what it returns,
    then acks."""
    event = handler.parse(inbound)
    state = await handler.load(event)
    decision = handler.decide(event, state, utc_now())
    return await handler.commit(decision)


def context_of(function: str, inbound: Inbound, subjects: Subjects) -> dict[str, str]:
    """What every log line about this message names: its function, tenant and run."""
    context = {"function": function}
    tenant = inbound.headers.get(TENANT_HEADER)
    if tenant is None:
        with contextlib.suppress(ValueError):  # a publisher's event: the tenant is in the subject
            tenant = subjects.split_event_subject(inbound.subject)[0]
    if tenant:
        context["tenant"] = tenant
    if run := inbound.headers.get("Stratum-Run-Id"):
        context["run_id"] = run
    return context


def span_attributes(context: dict[str, str], delivery: int) -> dict[str, str | int]:
    """What a message's span names besides the messaging conventions."""
    attributes: dict[str, str | int] = {f"stratum.{name}": value for name, value in context.items()}
    attributes["stratum.delivery"] = delivery
    return attributes


def message_id(inbound: Inbound) -> str:
    """The id of the event in `inbound`: what its own emitted events name as their cause."""
    return original_msg_id(inbound.headers)


def original_msg_id(headers: dict[str, str]) -> str:
    return headers.get(ORIGINAL_MSG_ID) or headers.get("Nats-Msg-Id", "")
