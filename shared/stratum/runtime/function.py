"""What a function is, independent of how messages reach it.

A `Function` declares the subjects it consumes and a handler. The handler validates the
event, loads state, decides, and commits the new state plus the events to emit in one
database transaction; it returns those events and the adapter publishes them (database
before bus). A handler that finds its message already handled raises StaleWriteError;
the adapter then re-publishes what that message caused before (`Nats-Msg-Id` drops copies).
Anything else it raises decides the message's delivery by its type (`stratum.runtime.delivery`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from stratum.bus.subjects import Subjects
from stratum.events import Envelope, RunCompensated, RunFailed, RunRejected
from stratum.runtime.publisher import Announcer
from stratum.store import RunStore


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
# how the adapter ends a run whose message it gave up on (`ends_runs`, `stratum.runtime.ending`)
RUN_ENDINGS = (RunRejected.TYPE, RunFailed.TYPE, RunCompensated.TYPE)


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
    # a function that drives runs: a permanent error on one of its messages ends that
    # message's run (which could not go on), and the adapter publishes the end for it
    ends_runs: bool = False

    def __post_init__(self) -> None:
        if self.ends_runs:  # published on its behalf: its NATS user may publish them too
            object.__setattr__(self, "emits", tuple(dict.fromkeys((*self.emits, *RUN_ENDINGS))))
