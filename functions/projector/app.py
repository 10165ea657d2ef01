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
# how long a run's write waits for more of its events to join it
COALESCE_SECONDS = 0.05


@dataclass
class _Write:
    """One pending write of a run's view, shared by every event applied before it starts."""

    view: core.RunView
    items: list[dict[str, Any]] = field(default_factory=list)
    # the write's task, referenced so it cannot be garbage-collected mid-flight
    task: asyncio.Task[None] | None = None
    done: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class Projector:
    """Applies events to run views and stores them.

    Recent views stay in memory, so an event costs no read. Events of one run that arrive
    close together are written together: each handler awaits the write that includes its
    event (so a message is acked only once its effect is stored), but a burst of a run's
    events costs one transaction, not one each. Writes of one run never overlap, so the
    stored view only moves forward.
    """

    def __init__(self, store: RunStore, *, coalesce: float = COALESCE_SECONDS) -> None:
        self.store = store
        self.coalesce = coalesce
        self._views: OrderedDict[str, core.RunView] = OrderedDict()
        self._loads = KeyedLocks()
        self._writes = KeyedLocks()
        self._pending: dict[str, _Write] = {}

    async def project(self, event: Envelope) -> None:
        run_id = event.runid
        async with self._loads.hold(run_id):
            pending = self._pending.get(run_id)
            view = self._views.get(run_id) or (pending.view if pending else None)
            if view is None:
                stored = await self.store.get_view(run_id)
                view = core.RunView.model_validate(_clean(stored)) if stored else None
            updated = core.apply(view, event)
            self._remember(updated)
            write = self._pending.get(run_id)
            if write is None:
                write = _Write(updated)
                self._pending[run_id] = write
                write.task = asyncio.create_task(self._write(run_id, write))
            write.view = updated
            write.items.append(core.history_item(event).model_dump(mode="json"))
        await asyncio.shield(write.done)

    async def _write(self, run_id: str, write: _Write) -> None:
        await asyncio.sleep(self.coalesce)
        async with self._writes.hold(run_id):
            if self._pending.get(run_id) is write:
                del self._pending[run_id]  # later events start a new write
            try:
                await self.store.put_view(write.view.model_dump(mode="json"), write.items)
            except Exception as error:
                self._views.pop(run_id, None)  # reload from the DB next time
                write.done.set_exception(error)
            else:
                write.done.set_result(None)

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
            await self.store.put_view(view.model_dump(mode="json"), items)
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
