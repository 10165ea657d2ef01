"""Projector: folds every run event into the read models the API and CLI show."""

from __future__ import annotations

import asyncio
import random
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from functions.projector import core
from functions.projector.ports import ProjectorStore
from stratum.events import Envelope
from stratum.keyed_lock import KeyedLocks
from stratum.runtime import Declaration, Dependencies, Inbound
from stratum.store import StaleWriteError, ViewWrite
from stratum.telemetry import metrics, tracing

CACHED_VIEWS = 2048
# how long a write waits for more events to join it
COALESCE_SECONDS = 0.05
# how many times a batch is re-folded and retried when other instances keep writing first
CAS_ATTEMPTS = 20


@dataclass
class _Pending:
    """A run's view waiting to be written: the events folded into it since the stored
    `version` it was based on, and their history rows."""

    view: core.RunView
    version: int
    events: list[Envelope] = field(default_factory=list)
    items: list[dict[str, Any]] = field(default_factory=list)


class Projector:
    """Applies events to run views and stores them.

    Recent views stay in memory, so an event costs no read. Writes are batched: one
    flusher stores every run's changed view (and the history rows behind it) in one
    transaction, `coalesce` seconds after the first change, so a burst of events from
    many runs costs one write. Each handler awaits the flush that includes its event, so
    a message is acked only once its effect is stored; flushes never overlap.

    Several projector instances may share the database, each with its own cache, so a
    write is conditional on the stored view's `version` being the one the cached view was
    based on. When another instance got there first, the stored view is read again and
    this batch's events are folded into it (`apply` is order-insensitive and idempotent),
    then the write is retried: no instance's update is lost. `versioned=False` drops the
    check; only a single writer may use it (a replay into empty read models).
    """

    def __init__(
        self, store: ProjectorStore, *, coalesce: float = COALESCE_SECONDS, versioned: bool = True
    ) -> None:
        self.store = store
        self.coalesce = coalesce
        self.versioned = versioned
        self._views: OrderedDict[str, tuple[core.RunView, int]] = OrderedDict()
        self._loads = KeyedLocks()
        self._pending: dict[str, _Pending] = {}
        # the batch being written now: a run's next events fold onto its view, not onto
        # the older cached one (which would count the batch's status changes again)
        self._writing: dict[str, _Pending] = {}
        self._flushed: asyncio.Future[None] | None = None
        self._flusher: asyncio.Task[None] | None = None

    async def project(self, event: Envelope, trace_id: str = "") -> None:
        """Fold `event` into its run's view; `trace_id` is the trace it travelled in,
        which the view keeps from the first event that had one."""
        run_id = event.runid
        async with self._loads.hold(run_id):
            pending = self._pending.get(run_id)
            if pending is None:
                view, version = await self._base(run_id)
                updated = _traced(core.apply(view, event), trace_id)
                pending = self._pending[run_id] = _Pending(updated, version)
            else:
                view = pending.view
                pending.view = _traced(core.apply(view, event), trace_id)
            count_transition(view, pending.view)
            pending.events.append(event)
            pending.items.append(core.history_item(event).model_dump(mode="json"))
            flushed = self._schedule_flush()
        await asyncio.shield(flushed)

    async def _base(self, run_id: str) -> tuple[core.RunView | None, int]:
        """The view a run's next events fold onto, and the version it will be stored as:
        the one being written (if its write fails, the version check catches it), else
        the cached or stored one."""
        writing = self._writing.get(run_id)
        if writing is not None:
            return writing.view, writing.version + 1
        return self._views.get(run_id) or await self._load(run_id)

    async def _load(self, run_id: str) -> tuple[core.RunView | None, int]:
        stored = await self.store.get_view(run_id)
        if stored is None:
            return None, 0
        return core.RunView.model_validate(_clean(stored)), int(stored.get("version") or 0)

    def _schedule_flush(self) -> asyncio.Future[None]:
        """The future of the next flush, starting the flusher if none is waiting."""
        if self._flushed is None:
            self._flushed = asyncio.get_running_loop().create_future()
            previous = self._flusher
            self._flusher = asyncio.create_task(self._flush(self._flushed, previous))
        return self._flushed

    async def _flush(self, done: asyncio.Future[None], previous: asyncio.Task[None] | None) -> None:
        await asyncio.sleep(self.coalesce)
        if previous is not None:
            await asyncio.wait([previous])  # flushes never overlap
        batch, self._pending, self._flushed = self._pending, {}, None
        self._writing = batch
        try:
            await self._write(batch)
        except Exception as error:
            for run_id in batch:
                self._views.pop(run_id, None)  # reload from the DB next time
            done.set_exception(error)
        else:
            for pending in batch.values():
                self._remember(pending.view, pending.version + 1)
            done.set_result(None)
        finally:
            self._writing = {}

    async def _write(self, batch: dict[str, _Pending]) -> None:
        for attempt in range(1, CAS_ATTEMPTS + 1):
            try:
                await self.store.put_views(
                    [
                        ViewWrite(
                            pending.view.model_dump(mode="json"),
                            pending.items,
                            pending.version if self.versioned else None,
                        )
                        for pending in batch.values()
                    ]
                )
                return
            except StaleWriteError:
                if attempt == CAS_ATTEMPTS:
                    raise
                # jittered backoff: writers that keep colliding spread out
                await asyncio.sleep(random.uniform(0, 0.002 * attempt))
                for run_id, pending in batch.items():  # someone else wrote: fold into theirs
                    stored, version = await self._load(run_id)
                    if version != pending.version:
                        pending.view = _fold(stored, pending.events)
                        pending.version = version

    async def rebuild(self) -> int:
        """Replay: drop the read models and fold them again from the stored event log.

        Meant for a quiet system: an event projected while this runs may be overwritten
        by the rebuilt view (a second replay then includes it).
        """
        views, history = core.replay(await self.store.all_events())
        self._views.clear()
        await self.store.clear_views()
        for view in views.values():
            items = [item.model_dump(mode="json") for run, item in history if run == view.run_id]
            await self.store.put_views([ViewWrite(view.model_dump(mode="json"), items, 0)])
        return len(views)

    def _remember(self, view: core.RunView, version: int) -> None:
        self._views[view.run_id] = (view, version)
        self._views.move_to_end(view.run_id)
        while len(self._views) > CACHED_VIEWS:
            self._views.popitem(last=False)


def _traced(view: core.RunView, trace_id: str) -> core.RunView:
    if not trace_id or view.trace_id:
        return view
    return view.model_copy(update={"trace_id": trace_id})


def count_transition(before: core.RunView | None, after: core.RunView) -> None:
    """Count a run entering a status, and its duration when that status is final.

    Folding is idempotent, so an event seen again changes no status and counts nothing.
    """
    if before is not None and before.status == after.status:
        return
    status = _snake(after.status)
    metrics.RUNS.labels(after.tenant, status).inc()
    if after.finished and after.duration_ms is not None:
        metrics.RUN_DURATION.labels(after.tenant, status).observe(after.duration_ms / 1000)


def _snake(status: str) -> str:
    """`CompensationFailed` -> `compensation_failed`: the label value of a status."""
    return "".join("_" + c.lower() if c.isupper() else c for c in status).lstrip("_")


def _fold(view: core.RunView | None, events: list[Envelope]) -> core.RunView:
    for event in events:
        view = core.apply(view, event)
    assert view is not None, "a pending write holds at least one event"
    return view


def _clean(stored: dict[str, object]) -> dict[str, object]:
    return {key: value for key, value in stored.items() if key != "_id"}


@dataclass(frozen=True)
class ProjectedEvent:
    event: Envelope
    trace_id: str


class ProjectorHandler:
    """Every run event folds into its run's view; the fold and the batched write are the
    projector's (`Projector.project`), so `commit` is where its one transaction happens."""

    def __init__(self, dependencies: Dependencies) -> None:
        self.projections = dependencies.projections or Projector(dependencies.store)

    def parse(self, inbound: Inbound) -> ProjectedEvent:
        return ProjectedEvent(Envelope.from_bytes(inbound.body), tracing.trace_id())

    async def load(self, event: ProjectedEvent) -> None:
        return None  # the view is the projector's (cached, or read as it folds)

    def decide(self, event: ProjectedEvent, state: None, now: datetime) -> ProjectedEvent:
        return event

    async def commit(self, decision: ProjectedEvent) -> Sequence[Envelope]:
        await self.projections.project(decision.event, decision.trace_id)
        return []  # it announces nothing


DECLARATION = Declaration(
    name="projector",
    handler=ProjectorHandler,
    consumes=None,  # every run event
    key=None,  # the projector orders a run's events itself (and writes them together)
    concurrency=128,
)
