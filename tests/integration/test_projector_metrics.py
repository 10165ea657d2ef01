"""Runs by status are counted by the projector, once per status a run enters: an event
seen again counts nothing, and an event arriving while the run's previous view is still
being written folds onto that view, not onto the older cached one (which would count the
write's status changes a second time). Real embedded SurrealDB."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from functions.projector.app import Projector
from stratum.events import (
    Envelope,
    NodeStarted,
    Payload,
    RunPlanned,
    RunSucceeded,
    StageCompleted,
)
from stratum.store import RunStore, ViewWrite
from stratum.telemetry import metrics
from tests.events import accepted, run_events


def lifecycle(run_id: str, tenant: str) -> list[Envelope]:
    payloads: list[Payload] = [
        accepted(event_id=run_id),
        RunPlanned(graph_version="v", stages=[["a", "b"]]),
        NodeStarted(stage=0, node="a"),
        NodeStarted(stage=0, node="b"),
        StageCompleted(stage=0, nodes=["a", "b"]),
        RunSucceeded(outputs_hash="o"),
    ]
    return run_events(
        payloads, run_id=run_id, tenant=tenant, at_ms=[10 * i for i in range(len(payloads))]
    )


def counted(tenant: str) -> dict[str, float]:
    """stratum_runs_total of `tenant`, by status, as /metrics would show it."""
    return {
        sample.labels["status"]: sample.value
        for family in metrics.REGISTRY.collect()
        if family.name == "stratum_runs"
        for sample in family.samples
        if sample.name == "stratum_runs_total" and sample.labels.get("tenant") == tenant
    }


EXPECTED = {"accepted": 1.0, "planned": 1.0, "running": 1.0, "succeeded": 1.0}


@pytest.mark.asyncio(loop_scope="session")
async def test_each_status_is_counted_once_even_when_events_come_again(
    store: RunStore,
) -> None:
    tenant = f"m{uuid.uuid4().hex[:8]}"
    projector = Projector(store, coalesce=0.0)
    events = lifecycle("run-again", tenant)
    for event in [*events, *events]:  # a redelivery of every event
        await projector.project(event)
    assert counted(tenant) == EXPECTED
    durations = [
        sample
        for family in metrics.REGISTRY.collect()
        if family.name == "stratum_run_duration_seconds"
        for sample in family.samples
        if sample.name.endswith("_count") and sample.labels.get("tenant") == tenant
    ]
    assert [(s.labels["status"], s.value) for s in durations] == [("succeeded", 1.0)]


@pytest.mark.asyncio(loop_scope="session")
async def test_events_arriving_during_a_write_are_not_counted_twice(
    store: RunStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant = f"m{uuid.uuid4().hex[:8]}"
    projector = Projector(store, coalesce=0.0)
    accepted, planned, started_a, *rest = lifecycle("run-during-write", tenant)
    await projector.project(accepted)
    await projector.project(planned)  # cached: Planned

    writing = asyncio.Event()
    put_views = store.put_views

    async def slow_put_views(writes: list[ViewWrite]) -> None:
        writing.set()
        await asyncio.sleep(0.05)  # a slow disk: the write stays in flight a while
        await put_views(writes)

    monkeypatch.setattr(store, "put_views", slow_put_views)
    first = asyncio.ensure_future(projector.project(started_a))
    await writing.wait()  # the Running view (a started) is being written right now
    later = [asyncio.ensure_future(projector.project(event)) for event in rest]
    await asyncio.gather(first, *later)
    assert counted(tenant) == EXPECTED
    stored = await store.get_view("run-during-write")
    assert stored is not None and stored["status"] == "Succeeded"
