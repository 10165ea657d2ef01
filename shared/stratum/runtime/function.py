"""What a function is, independent of how messages reach it.

Each `functions/<name>/app.py` declares its function at module level (`Declaration`): the
events it consumes and emits, how its messages are ordered, what it reads, and its handler
class. The handler does one message in four steps, which the runner
(`stratum.runtime.handling.Handling`, shared by the JetStream and HTTP adapters) calls in
order: `parse` (validate) -> `load` (read the state) -> `decide` (pure: the writes and the
events to announce) -> `commit` (the new state and the events in one database transaction);
the adapter then publishes those events and acks (database before bus).

A function may also *listen* to run events as they pass (`listens`, handled by `hear`):
every instance hears each one, unlike consumed messages, which one instance handles.
The stage executor listens for `stratum.run.cancelling` to stop a stage it is running.
Hearing is a shortcut, never the only path: the JetStream adapter listens, the HTTP one
cannot (no broadcast under Knative), and a write that moves a cancelled run on fails
anyway (`CancellingError`).

A `commit` that finds its message already handled raises StaleWriteError; the runner then
re-publishes what that message caused before (`Nats-Msg-Id` drops copies). Anything else a
step raises decides the message's delivery by its type (`stratum.runtime.delivery`).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

from stratum.bus.subjects import Subjects
from stratum.events import Envelope, RunCancelled, RunCompensated, RunFailed, RunRejected
from stratum.runtime.publisher import Announcer

if TYPE_CHECKING:  # the store and the registries import the runtime's pieces
    from stratum.authz import PolicyRegistry
    from stratum.config import Settings
    from stratum.executor import ExecutorConfig
    from stratum.graph.registry import GraphRegistry
    from stratum.store import RunStore

EventT = TypeVar("EventT")
StateT = TypeVar("StateT")
DecisionT = TypeVar("DecisionT")

# how the adapter ends a run whose message it gave up on (`ends_runs`, `stratum.runtime.ending`)
RUN_ENDINGS = (RunRejected.TYPE, RunFailed.TYPE, RunCompensated.TYPE, RunCancelled.TYPE)
# where a function's messages come from: publishers' events, or Stratum's own run events
Source = Literal["publishers", "runs"]


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


class Handler(Protocol[EventT, StateT, DecisionT]):
    """One message, in the four steps the runner calls in order."""

    def parse(self, inbound: Inbound) -> EventT:
        """Validate: the message as this function's event (InvalidEventError if not)."""
        ...

    async def load(self, event: EventT) -> StateT:
        """Read what deciding needs (a handler that runs scripts runs them here)."""
        ...

    def decide(self, event: EventT, state: StateT, now: datetime) -> DecisionT:
        """Pure: what the event does to the state, and the events that announce it."""
        ...

    async def commit(self, decision: DecisionT) -> Sequence[Envelope]:
        """Store the decision with its events in one transaction; return the events."""
        ...


class Listener(Protocol):
    """A handler that hears the run events its function `listens` to (on every instance)."""

    def hear(self, event: Envelope) -> None:
        """Take note of `event`; called on the event loop, must not block or raise."""
        ...


class Projections(Protocol):
    """The projector's folder of run events into read models (shared with the API)."""

    async def project(self, event: Envelope, trace_id: str = "") -> None: ...


@dataclass(frozen=True)
class Dependencies:
    """What handlers are built from; each takes the part it needs, typed by its port."""

    store: RunStore
    subjects: Subjects
    # the bus (`Publisher`), or the Knative sink: events a handler announces mid-way
    publisher: Announcer
    log: logging.Logger
    settings: Settings
    graphs: GraphRegistry | None = None
    policies: PolicyRegistry | None = None
    executor: ExecutorConfig | None = None
    projections: Projections | None = None

    def graph_registry(self) -> GraphRegistry:
        assert self.graphs is not None, "a function that reads the graph needs the registry"
        return self.graphs

    def policy_registry(self) -> PolicyRegistry:
        assert self.policies is not None, "a function that decides triggers needs policies"
        return self.policies

    def executor_config(self) -> ExecutorConfig:
        assert self.executor is not None, "a function that runs scripts needs an executor"
        return self.executor


@dataclass(frozen=True)
class Declaration:
    """A function as its module declares it: read without building anything (what the
    host, the NKey permissions and the deployment manifests are made from)."""

    name: str
    handler: Callable[[Dependencies], Handler[Any, Any, Any]]
    # the run event types it consumes (None: all of them), unless source is "publishers"
    consumes: tuple[str, ...] | None
    # the event types it publishes: all that its NATS user may publish (with its own
    # consumer's API and its dead-letter subject)
    emits: tuple[str, ...] = ()
    source: Source = "runs"
    # messages with the same key (a run id) are handled one at a time; None: no ordering
    key: Callable[[Inbound], str] | None = None
    # messages handled at once per instance; a callable reads it from the settings
    concurrency: int | Callable[[Settings], int] = 64
    # seconds the bus waits for an ack before redelivering; long handlers send heartbeats
    ack_wait: float = 10.0
    max_deliver: int = 10
    # a function that drives runs: a permanent error on one of its messages ends that
    # message's run (which could not go on), and the adapter publishes the end for it
    ends_runs: bool = False
    # run event types every instance hears as they pass (its handler is a `Listener`)
    listens: tuple[str, ...] = ()
    # what it reads besides the store: the graph, the policies; whether it runs scripts
    # (and so needs the secret store and an executor)
    reads_graph: bool = False
    decides_triggers: bool = False
    runs_scripts: bool = False

    def place(self, subjects: Subjects, settings: Settings) -> Function:
        """The function under a subject prefix, for its declaration only (no handler)."""
        consumed: tuple[str, ...]
        if self.source == "publishers":
            stream, consumed = subjects.events_stream, (subjects.events_wildcard,)
        elif self.consumes is None:
            stream, consumed = subjects.runs_stream, subjects.internal_wildcards
        else:
            stream = subjects.runs_stream
            consumed = tuple(subjects.internal(kind) for kind in self.consumes)
        concurrency = (
            self.concurrency if isinstance(self.concurrency, int) else self.concurrency(settings)
        )
        return Function(
            name=self.name,
            stream=stream,
            subjects=consumed,
            key=self.key,
            concurrency=concurrency,
            ack_wait=self.ack_wait,
            emits=self.emits,
            max_deliver=self.max_deliver,
            ends_runs=self.ends_runs,
            listens=tuple(subjects.internal(kind) for kind in self.listens),
        )

    def bind(self, dependencies: Dependencies) -> Function:
        """The function ready to run: placed, with its handler built."""
        placed = self.place(dependencies.subjects, dependencies.settings)
        return placed.with_handler(self.handler(dependencies))


@dataclass(frozen=True)
class Function:
    """A named handler bound to the subjects (under the prefix) it consumes."""

    name: str
    stream: str
    subjects: tuple[str, ...]
    # None: placed for its declaration only (deployment files); it cannot run
    handler: Handler[Any, Any, Any] | None = None
    key: Callable[[Inbound], str] | None = None
    concurrency: int = 64
    ack_wait: float = 10.0
    emits: tuple[str, ...] = ()
    max_deliver: int = 10
    ends_runs: bool = False
    # subjects every instance hears (core NATS, no acks: see `Listener`)
    listens: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.ends_runs:  # published on its behalf: its NATS user may publish them too
            object.__setattr__(self, "emits", tuple(dict.fromkeys((*self.emits, *RUN_ENDINGS))))

    def with_handler(self, handler: Handler[Any, Any, Any]) -> Function:
        return dataclasses.replace(self, handler=handler)

    @property
    def runnable(self) -> Handler[Any, Any, Any]:
        if self.handler is None:
            raise RuntimeError(f"function {self.name} is placed for its declaration only")
        return self.handler
