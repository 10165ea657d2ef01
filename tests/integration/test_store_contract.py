"""The store's contract, part three: each function's port (`functions/<name>/ports.py`)
behaves as its handler relies on, on every store implementation (`contract_store`). The
store is used through the port's type, so a method a port names and the store lacks, or
signs differently, fails mypy here as well as at run time."""

from __future__ import annotations

import uuid

import pytest

from functions.compensator.ports import CompensatorStore
from functions.ingest.ports import IngestStore
from functions.planner.ports import PlannerStore, QueueStore
from functions.projector.ports import ProjectorStore
from functions.stage_executor.ports import StageStore
from stratum.events import (
    CompensationRecorded,
    Envelope,
    RunAdmitted,
    RunDenied,
    RunQueued,
    emit,
)
from stratum.runs.status import RunStatus
from stratum.store import RunChange, RunStore, StaleWriteError, ViewWrite
from tests.events import T0, accepted


def new_id() -> str:
    return f"run-{uuid.uuid4().hex[:8]}"


async def an_accepted_run(ingest: IngestStore, tenant: str = "acme", run_id: str = "") -> str:
    run_id = run_id or new_id()
    event = emit(accepted(), cause=run_id, run_id=run_id, tenant=tenant, source="t", now=T0)
    record = {"id": run_id, "tenant": tenant, "event_id": run_id, "topic": "t.x"}
    assert await ingest.accept_run(record, event, cause=run_id)
    return run_id


async def status_of(store: RunStore, run_id: str) -> str:
    run = await store.get_run(run_id)
    assert run is not None
    return str(run["status"])


async def test_ingest_records_a_trigger_once_whatever_was_decided(
    contract_store: RunStore,
) -> None:
    ingest: IngestStore = contract_store
    run_id = new_id()
    denied = emit(
        RunDenied(**accepted().model_dump(exclude={"event_data"}), reason="no", policy_ids=["p"]),
        cause=run_id,
        run_id=run_id,
        tenant="acme",
        source="t",
        now=T0,
    )
    record = {"id": run_id, "tenant": "acme", "event_id": run_id, "topic": "t.x"}
    assert await ingest.deny_run(record, denied, cause=run_id)
    # the same event again, denied or accepted this time: it already has its run
    assert not await ingest.deny_run(record, denied, cause=run_id)
    accepted_too = emit(accepted(), cause=run_id, run_id=run_id, tenant="acme", source="t", now=T0)
    assert not await ingest.accept_run(record, accepted_too, cause=run_id)
    assert [e.id for e in await ingest.events_caused_by(run_id)] == [denied.id]
    assert await status_of(contract_store, run_id) == RunStatus.DENIED.value

    await ingest.record_rejection({"id": "r1", "subject": "s", "reason": "not json", "at": "t"})
    assert [r["reason"] for r in await contract_store.rejections()] == ["not json"]
    assert await ingest.publisher_by_key("UNKNOWN") is None


async def test_ingest_announces_again_a_run_stored_without_its_event(
    contract_store: RunStore,
) -> None:
    """A crash once kept a run's creation but not the `run.accepted` stored with it (kill
    -9, embedded engine): the repeat of its trigger must store and announce it again, once,
    and only while the run has not moved on."""
    ingest: IngestStore = contract_store
    run_id = new_id()
    event = emit(accepted(), cause=run_id, run_id=run_id, tenant="acme", source="t", now=T0)
    record = {"id": run_id, "tenant": "acme", "event_id": run_id, "topic": "t.x"}
    record["inputs_hash"] = "h"
    assert await ingest.accept_run(record, event, cause=run_id)
    await contract_store.db.query("DELETE event WHERE cause = $run;", {"run": run_id})
    assert await ingest.events_caused_by(run_id) == []

    async def again(
        status: RunStatus = RunStatus.ACCEPTED, inputs_hash: str = "h"
    ) -> list[Envelope]:
        return await ingest.restore_announcement(
            run_id, event, run_id, status=status, inputs_hash=inputs_hash
        )

    assert await again(inputs_hash="other") == [], "another event under the same id"
    assert await again(RunStatus.DENIED) == []
    assert [e.id for e in await again()] == [event.id]
    assert [e.id for e in await ingest.events_caused_by(run_id)] == [event.id]
    assert await again() == [], "stored once"


async def test_the_planner_queues_admits_and_rejects_runs(contract_store: RunStore) -> None:
    planner: PlannerStore = contract_store
    queue: QueueStore = planner
    running = await an_accepted_run(contract_store, "q")
    await planner.record_plan(
        running, graph_version="v", stages=[["a"]], stage_links=[], events=[], cause="p"
    )
    waiting = await an_accepted_run(contract_store, "q")
    load = await queue.tenant_load("q", waiting)
    assert (load.in_progress, load.ahead) == (1, 0)
    queued = emit(
        RunQueued(reason="full", limit=1, in_progress=1, ahead=0),
        cause="c",
        run_id=waiting,
        tenant="q",
        source="t",
        now=T0,
    )
    await queue.queue_run(waiting, "full", [queued], cause="c")
    assert await queue.queue_head("q", 10) == (1, [waiting])
    admitted = emit(
        RunAdmitted(limit=1, in_progress=0),
        cause="w",
        run_id=waiting,
        tenant="q",
        source="t",
        now=T0,
    )
    await queue.admit_queued(waiting, [admitted], cause="w")
    # admitted, it holds a slot and is no longer in line: a second wake-up passes it by
    assert await queue.queue_head("q", 10) == (2, [])
    with pytest.raises(StaleWriteError):
        await queue.admit_queued(waiting, [admitted], cause="w2")
    # one that finds the tenant full when it comes to be planned waits in line again
    await queue.queue_run(waiting, "full", [queued], cause="c2")
    assert await queue.queue_head("q", 10) == (1, [waiting])
    await queue.admit_queued(waiting, [admitted], cause="w3")
    # its turn is recorded; once planned, it is no longer queued and cannot be admitted again
    await planner.record_plan(
        waiting, graph_version="v", stages=[["a"]], stage_links=[], events=[], cause="p2"
    )
    assert await queue.queue_head("q", 10) == (2, [])
    with pytest.raises(StaleWriteError):
        await queue.admit_queued(waiting, [admitted], cause="w")
    found = await planner.last_event_of(waiting, ["stratum.run.accepted"])
    assert found is not None and found[0].runid == waiting

    rejected = await an_accepted_run(contract_store)
    await planner.reject_run(rejected, "no such topic", [], cause="r")
    run = await contract_store.get_run(rejected)
    assert run is not None and (run["status"], run["error"]) == ("Failed", "no such topic")
    with pytest.raises(StaleWriteError):
        await planner.reject_run(rejected, "again", [], cause="r")


async def a_compensating_run(store: RunStore) -> str:
    stages: StageStore = store
    run_id = await an_accepted_run(store)
    await store.record_plan(
        run_id, graph_version="v", stages=[["a"], ["b"]], stage_links=[], events=[], cause="p"
    )
    await stages.begin_stage(run_id, 0, ["a"], [], "exec-0", "lease")
    record = {"status": "succeeded", "stage": 0}
    await stages.finish_stage(
        run_id,
        0,
        "Failed",
        [],
        "exec-0",
        lease="lease",
        last_node=("a", record, {"x": 1}),
        then=RunChange(RunStatus.COMPENSATING, error="b broke"),
    )
    return run_id


async def test_a_saga_counts_its_starts_and_ends_once(contract_store: RunStore) -> None:
    saga: CompensatorStore = contract_store
    run_id = await a_compensating_run(contract_store)
    run, executions, capabilities = await saga.run_state(run_id)
    assert run is not None and run["status"] == RunStatus.COMPENSATING.value
    assert executions["a"]["status"] == "succeeded" and capabilities == {"x": 1}

    assert await saga.begin_compensation(run_id, "a") == 1
    assert await saga.begin_compensation(run_id, "a") == 2  # cut short, started again
    assert (await saga.compensations(run_id))["a"]["status"] == "running"
    step = emit(
        CompensationRecorded(order=0, stage=0, node="a", status="succeeded", duration_ms=1.0),
        cause="cmd",
        run_id=run_id,
        tenant="acme",
        source="t",
        now=T0,
    )
    await saga.record_compensation(run_id, "a", {"status": "succeeded"}, [step], "cmd")
    assert (await saga.compensations(run_id))["a"]["status"] == "succeeded"
    await saga.finish_compensation(run_id, ["b"], [], "cmd")
    assert await status_of(contract_store, run_id) == RunStatus.COMPENSATION_FAILED.value
    with pytest.raises(StaleWriteError):  # ended: a redelivery cannot end it again
        await saga.finish_compensation(run_id, [], [], "cmd")


async def test_a_view_is_written_only_over_the_version_it_was_based_on(
    contract_store: RunStore,
) -> None:
    views: ProjectorStore = contract_store
    run_id = new_id()
    doc = {"run_id": run_id, "tenant": "acme", "status": "Accepted"}
    await views.put_views([ViewWrite(doc, [], 0)])
    await views.put_views([ViewWrite(doc | {"status": "Planned"}, [], 1)])
    with pytest.raises(StaleWriteError):  # another writer moved it to version 2 first
        await views.put_views([ViewWrite(doc | {"status": "Running"}, [], 1)])
    stored = await views.get_view(run_id)
    assert stored is not None and stored["status"] == "Planned" and stored["version"] == 2
    assert await views.get_view(run_id, tenant="other") is None


async def test_a_queued_runs_place_counts_only_older_queued_runs_of_its_tenant(
    contract_store: RunStore,
) -> None:
    queue: QueueStore = contract_store
    # ids in creation order too: runs created in the same instant are ordered by id
    prefix = new_id()
    first, second, third = [
        await an_accepted_run(contract_store, "line", f"{prefix}-{n}") for n in range(3)
    ]
    other = await an_accepted_run(contract_store, "elsewhere")
    for run in (first, second, third, other):
        await queue.queue_run(run, "full", [], cause=f"q-{run}")
    loads = [await queue.tenant_load("line", run) for run in (first, second, third)]
    assert [(load.in_progress, load.ahead) for load in loads] == [(0, 0), (0, 1), (0, 2)]
    assert (await queue.tenant_load("elsewhere", other)).ahead == 0
