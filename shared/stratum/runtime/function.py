"""What a function is, independent of how messages reach it.

A `Function` declares the subjects it consumes and a handler. The handler validates the
event, loads state, decides, and commits the new state plus the events to emit in one
database transaction; it returns those events and the adapter publishes them (database
before bus). A handler that finds its message already handled raises StaleWriteError;
the adapter then re-publishes what that message caused before (`Nats-Msg-Id` drops copies).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from stratum.events import Envelope
from stratum.runtime.publisher import Announcer
from stratum.store import RunStore
from stratum.subjects import Subjects


@dataclass(frozen=True)
class FunctionContext:
    """What every handler may use: the store, naming, and its logger."""

    store: RunStore
    subjects: Subjects
    # the bus (`Publisher`), or the Knative sink: events a handler announces mid-way
    publisher: Announcer
    log: logging.Logger


@dataclass(frozen=True)
class Inbound:
    """A message as it arrived: subject, headers and raw body."""

    subject: str
    headers: dict[str, str]
    body: bytes
    delivery: int = 1


def run_key(inbound: Inbound) -> str:
    """Order by run: the publisher puts the run id in a header of every internal event."""
    return inbound.headers.get("Stratum-Run-Id", "")


Handler = Callable[[Inbound], Awaitable[Sequence[Envelope]]]


@dataclass(frozen=True)
class Function:
    """A named handler bound to the subjects (under the prefix) it consumes."""

    name: str
    stream: str
    subjects: tuple[str, ...]
    handle: Handler
    # messages with the same key (a run id) are handled one at a time; None: no ordering
    key: Callable[[Inbound], str] | None = None
    concurrency: int = 64
    # seconds the bus waits for an ack before redelivering; long handlers send heartbeats
    ack_wait: float = 10.0
    # the event types it publishes: all that its NATS user may publish (with its own
    # consumer's API and its dead-letter subject)
    emits: tuple[str, ...] = ()
    max_deliver: int = 10
