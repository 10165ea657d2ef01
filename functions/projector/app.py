"""Projector: folds every run event into the read models the API and CLI show."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from functions.projector import core
from stratum.events import Envelope
from stratum.runtime import Function, FunctionContext, Inbound
from stratum.runtime.keyed_lock import KeyedLocks
from stratum.store import RunStore

CACHED_VIEWS = 2048
# how long a write waits for more events to join it
COALESCE_SECONDS = 0.05


@dataclass
class _Pending:
    """A run's view waiting to be written, with the history rows of the events in it."""

    view: core.RunView
    items: list[dict[str, Any]] = field(default_factory=list)


class Projector:
    """Applies events to run views and stores them.

    Recent views stay in memory, so an event costs no read. Writes are batched: one
    flusher stores every run's changed view (and the history rows behind it) in one
    transaction, `coalesce` seconds after the first change, so a burst of events from
    many runs costs one write. Each handler awaits the flush that includes its event, so
    a message is acked only once its effect is stored; flushes never overlap, so a stored
    view only moves forward.
    """

    def __init__(self, store: RunStore, *, coalesce: float = COALESCE_SECONDS) -> None:
        self.store = store
        self.coalesce = coalesce
        self._views: OrderedDict[str, core.RunView] = OrderedDict()
        self._loads = KeyedLocks()
        self._pending: dict[str, _Pending] = {}
        self._flushed: asyncio.Future[None] | None = None
        self._flusher: asyncio.Task[None] | None = None

    async def project(self, event: Envelope) -> None:
        run_id = event.runid
        async with self._loads.hold(run_id):
            pending = self._pending.get(run_id)
            view = pending.view if pending else self._views.get(run_id)
            if view is None:
                stored = await self.store.get_view(run_id)
                view = core.RunView.model_validate(_clean(stored)) if stored else None
            updated = core.apply(view, event)
            self._remember(updated)
            if pending is None:
                pending = self._pending[run_id] = _Pending(updated)
            pending.view = updated
            pending.items.append(core.history_item(event).model_dump(mode="json"))
            flushed = self._schedule_flush()
        await asyncio.shield(flushed)

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
        try:
            await self.store.put_views(
                [
                    (pending.view.model_dump(mode="json"), pending.items)
                    for pending in batch.values()
                ]
            )
        except Exception as error:
            for run_id in batch:
                self._views.pop(run_id, None)  # reload from the DB next time
            done.set_exception(error)
        else:
            done.set_result(None)

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
            await self.store.put_views([(view.model_dump(mode="json"), items)])
        return len(views)

    def _remember(self, view: core.RunView) -> None:
        self._views[view.run_id] = view
        self._views.move_to_end(view.run_id)
        while len(self._views) > CACHED_VIEWS:
            self._views.popitem(last=False)


def _clean(stored: dict[str, object]) -> dict[str, object]:
    return {key: value for key, value in stored.items() if key != "_id"}


def build(ctx: FunctionContext, projector: Projector) -> Function:
    async def handle(inbound: Inbound) -> Sequence[Envelope]:
        await projector.project(Envelope.from_bytes(inbound.body))
        return []

    return Function(
        name="projector",
        stream=ctx.subjects.runs_stream,
        subjects=ctx.subjects.internal_wildcards,
        handle=handle,
        key=None,  # the projector orders a run's events itself (and writes them together)
        concurrency=128,
    )
