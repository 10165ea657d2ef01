"""The store's contract, part one: guarded writes and the event log behave as the runner
relies on, on every store implementation (`contract_store`)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from stratum.events import RunPlanned, emit
from stratum.runs.status import RunStatus
from stratum.store import AtLimitError, RunChange, RunStore, StaleWriteError

NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def store(contract_store: RunStore) -> RunStore:
    return contract_store


async def accepted_run(store: RunStore, run_id: str = "run-1") -> None:
    record = {"id": run_id, "tenant": "acme", "event_id": f"e-{run_id}", "topic": "x"}
    event = emit(
        RunPlanned(graph_version="v", stages=[["a"]]),
        cause="c0",
        run_id=run_id,
        tenant="acme",
        source="test",
        now=NOW,
    )
    assert await store.accept_run(record, event, cause="c0")


async def test_a_guarded_write_done_twice_is_stale_and_its_events_can_be_found(
    store: RunStore,
) -> None:
    await accepted_run(store)
    planned = [
        emit(
            RunPlanned(graph_version="v", stages=[["a"]]),
            cause="c1",
            run_id="run-1",
            tenant="acme",
            source="test",
            now=NOW,
        )
    ]
    await store.record_plan(
        "run-1", graph_version="v", stages=[["a"]], stage_links=[], events=planned, cause="c1"
    )
    with pytest.raises(StaleWriteError, match="already planned"):
        await store.record_plan(
            "run-1", graph_version="v", stages=[["a"]], stage_links=[], events=planned, cause="c1"
        )
    assert [e.id for e in await store.events_caused_by("c1")] == [planned[0].id]
    run = await store.get_run("run-1")
    assert run is not None and run["status"] == "Planned" and run["version"] == 2


async def test_the_same_event_accepted_twice_makes_one_run(store: RunStore) -> None:
    await accepted_run(store, "run-2")
    record = {"id": "run-2", "tenant": "acme", "event_id": "e-run-2", "topic": "x"}
    event = emit(
        RunPlanned(graph_version="v", stages=[]),
        cause="c0",
        run_id="run-2",
        tenant="acme",
        source="test",
        now=NOW,
    )
    assert not await store.accept_run(record, event, cause="c0")


async def test_a_superseded_execution_cannot_record_its_late_result(store: RunStore) -> None:
    await accepted_run(store, "run-3")
    await store.record_plan(
        "run-3", graph_version="v", stages=[["a", "b"]], stage_links=[], events=[], cause="p"
    )
    # the first execution takes the stage, then its instance stalls; a redelivery takes over
    first = (await store.begin_stage("run-3", 0, ["a", "b"], [], "cmd", "lease-1")).todo
    second = await store.begin_stage("run-3", 0, ["a", "b"], [], "cmd", "lease-2")
    assert first == {"a": 1, "b": 1} and second.todo == {"a": 2, "b": 2}  # executions counted
    assert {node: row["status"] for node, row in second.executions.items()} == {
        "a": "running",
        "b": "running",
    }

    record = {"status": "succeeded", "stage": 0}
    with pytest.raises(StaleWriteError, match="taken over"):
        await store.finish_node("run-3", "a", record, {"x": 1}, [], "cmd", "lease-1")
    with pytest.raises(StaleWriteError, match="taken over"):
        await store.finish_stage("run-3", 0, "Succeeded", [], "cmd", lease="lease-1")
    assert await store.capabilities("run-3") == {}  # nothing of the late result was kept

    await store.finish_node("run-3", "a", record, {"x": 1}, [], "cmd", "lease-2")
    await store.finish_stage(
        "run-3", 0, "Succeeded", [], "cmd", lease="lease-2", last_node=("b", record, {"y": 2})
    )
    assert await store.capabilities("run-3") == {"x": 1, "y": 2}
    # a succeeded node is never handed out again, even to a later execution
    with pytest.raises(StaleWriteError, match="already ended"):
        await store.begin_stage("run-3", 0, ["a", "b"], [], "cmd", "lease-3")


async def test_a_stage_end_moves_the_run_on_in_the_same_transaction(store: RunStore) -> None:
    await accepted_run(store, "run-4")
    await store.record_plan(
        "run-4", graph_version="v", stages=[["a"], ["b"]], stage_links=[], events=[], cause="p"
    )
    record = {"status": "succeeded", "stage": 0}
    await store.begin_stage("run-4", 0, ["a"], [], "cmd-0", "lease-0")
    following = emit(
        RunPlanned(graph_version="v", stages=[]),  # stands for stage 1's command
        cause="cmd-0",
        run_id="run-4",
        tenant="acme",
        source="test",
        now=NOW,
    )
    await store.finish_stage(
        "run-4",
        0,
        "Succeeded",
        [following],
        "cmd-0",
        lease="lease-0",
        last_node=("a", record, {"x": 1}),
        then=RunChange(),
    )
    run = await store.get_run("run-4")
    assert run is not None and (run["status"], run["current_stage"]) == ("Running", 1)
    assert [e.id for e in await store.events_caused_by("cmd-0")] == [following.id]

    # the last stage ends the run; a stage end that finds the run elsewhere changes nothing
    await store.begin_stage("run-4", 1, ["b"], [], "cmd-1", "lease-1")
    with pytest.raises(StaleWriteError, match="past stage 0"):
        await store.finish_stage(
            "run-4", 0, "Succeeded", [], "cmd-x", lease="lease-0", then=RunChange()
        )
    await store.finish_stage(
        "run-4",
        1,
        "Succeeded",
        [],
        "cmd-1",
        lease="lease-1",
        last_node=("b", {"status": "succeeded", "stage": 1}, {"y": 2}),
        then=RunChange(RunStatus.SUCCEEDED, outputs_hash="h"),
    )
    run = await store.get_run("run-4")
    assert run is not None
    assert (run["status"], run["outputs_hash"], run["current_stage"]) == ("Succeeded", "h", 1)
    assert run.get("finished_at")
    assert await store.capabilities("run-4") == {"x": 1, "y": 2}


async def test_a_plan_is_stored_only_while_its_tenant_is_under_its_limit(
    store: RunStore,
) -> None:
    tenant = "acme"  # accepted_run's tenant
    for run_id in ("run-5", "run-6"):
        await accepted_run(store, run_id)
    plan = {"graph_version": "v", "stages": [["a"]], "stage_links": [], "events": []}
    busy = (await store.tenant_load(tenant, "run-5")).in_progress
    await store.record_plan("run-5", **plan, cause="p5", tenant=tenant, limit=busy + 1)

    # the tenant is now at busy + 1: the next run's plan is refused and nothing is written
    with pytest.raises(AtLimitError, match="run-6 waits"):
        await store.record_plan("run-6", **plan, cause="p6", tenant=tenant, limit=busy + 1)
    run = await store.get_run("run-6")
    assert run is not None and run["status"] == "Accepted"
    assert await store.events_caused_by("p6") == []
    # one more slot, or no limit, and it is planned
    await store.record_plan("run-6", **plan, cause="p6", tenant=tenant, limit=busy + 2)
    run = await store.get_run("run-6")
    assert run is not None and run["status"] == "Planned"
