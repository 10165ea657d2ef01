"""Projector: folds every run event into the read models the API and CLI show."""

from __future__ import annotations

from collections.abc import Sequence

from functions.projector import core
from stratum.events import Envelope
from stratum.runtime import Function, FunctionContext, Inbound, run_key
from stratum.store import RunStore


async def project(store: RunStore, event: Envelope) -> core.RunView:
    stored = await store.get_view(event.runid)
    view = core.RunView.model_validate(_clean(stored)) if stored else None
    updated = core.apply(view, event)
    if updated != view:
        await store.put_view(updated.model_dump(mode="json"))
    return updated


async def rebuild(store: RunStore) -> int:
    """Replay: drop the read models and fold them again from the stored event log."""
    views = core.replay(await store.all_events())
    await store.clear_views()
    for view in views.values():
        await store.put_view(view.model_dump(mode="json"))
    return len(views)


def _clean(stored: dict[str, object]) -> dict[str, object]:
    return {key: value for key, value in stored.items() if key != "_id"}


def build(ctx: FunctionContext) -> Function:
    async def handle(inbound: Inbound) -> Sequence[Envelope]:
        await project(ctx.store, Envelope.from_bytes(inbound.body))
        return []

    return Function(
        name="projector",
        stream=ctx.subjects.runs_stream,
        subjects=ctx.subjects.internal_wildcards,
        handle=handle,
        key=run_key,
        concurrency=16,
    )
