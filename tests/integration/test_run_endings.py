"""The store's contract, part two: ending a run whose message was given up on for good
(`stratum.runtime.ending.end_run`), on every store implementation (`contract_store`): the
end is stored with its event, in every state a run can be stuck in, once, and not at all
for a run that ended."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from stratum.events import RunAccepted, emit
from stratum.runs.status import RunStatus
from stratum.runtime.ending import end_run
from stratum.store import RunStore, StaleWriteError
from tests.events import T0, accepted


@pytest.fixture
def store(contract_store: RunStore) -> RunStore:
    return contract_store


REASON = "stage-executor gave up on t.stage.execute message evt-x (dead letter dl-x): boom"


async def a_run(store: RunStore) -> str:
    """A run as ingest stores it: Accepted, with its `run.accepted`."""
    run_id = f"run-{uuid.uuid4().hex[:8]}"
    event = emit(accepted(), cause=run_id, run_id=run_id, tenant="acme", source="t", now=T0)
    record = {"id": run_id, "tenant": "acme", "event_id": run_id, "topic": "t.x"}
    assert await store.accept_run(record, event, cause=run_id)
    return run_id


async def a_running_run(store: RunStore, stages: list[list[str]]) -> str:
    run_id = await a_run(store)
    await store.record_plan(
        run_id, graph_version="v", stages=stages, stage_links=[], events=[], cause="plan"
    )
    await store.begin_stage(run_id, 0, stages[0], [], "exec-0", "lease")
    return run_id


async def stored(store: RunStore, run_id: str) -> dict[str, Any]:
    run = await store.get_run(run_id)
    assert run is not None
    return run


async def test_an_accepted_run_ends_failed_with_the_reason_once(store: RunStore) -> None:
    run_id = await a_run(store)
    cause = f"evt-{uuid.uuid4().hex}"

    events = await end_run(store, run_id, REASON, cause=cause)

    assert [event.type for event in events] == ["stratum.run.rejected"]
    run = await stored(store, run_id)
    assert (run["status"], run["error"]) == ("Failed", REASON) and run["finished_at"]
    # stored with its event before anything is published (DB first)
    assert [event.id for event in await store.events_caused_by(cause)] == [events[0].id]
    # a repeat (the message delivered again before its term): nothing new, the same event
    again = await end_run(store, run_id, REASON, cause=cause)
    assert [event.id for event in again] == [events[0].id]
    assert (await stored(store, run_id))["version"] == run["version"]


async def test_a_running_run_fails_at_its_stage_without_a_saga(store: RunStore) -> None:
    run_id = await a_running_run(store, [["a"], ["b"]])

    events = await end_run(store, run_id, REASON, cause=f"evt-{uuid.uuid4().hex}")

    assert [event.type for event in events] == ["stratum.run.failed"]
    assert events[0].data == {"stage": 0, "error": REASON, "compensating": False}
    run = await stored(store, run_id)
    assert (run["status"], run["error"]) == ("Failed", REASON) and run["finished_at"]


async def test_a_compensating_run_ends_naming_what_was_not_undone(store: RunStore) -> None:
    run_id = await a_running_run(store, [["a", "b"], ["c"]])
    done = {"status": "succeeded", "stage": 0}
    await store.finish_node(run_id, "a", done, {}, [], "exec-0", "lease")
    await store.finish_node(run_id, "b", done, {}, [], "exec-0", "lease")
    # the stage failed with something to undo (as the stage's end records it)
    await store.db.query(
        "UPDATE type::thing('run', $run) SET status = 'Compensating', error = 'c failed';",
        {"run": run_id},
    )
    await store.record_compensation(run_id, "b", {"status": "succeeded"}, [], "undo")

    events = await end_run(store, run_id, REASON, cause=f"evt-{uuid.uuid4().hex}")

    assert [event.type for event in events] == ["stratum.run.compensated"]
    assert events[0].data == {"compensated": ["b"], "failed": ["a"]}
    run = await stored(store, run_id)
    assert (run["status"], run["failed_compensations"]) == ("CompensationFailed", ["a"])


async def test_a_run_that_ended_or_never_existed_is_left_alone(store: RunStore) -> None:
    run_id = await a_run(store)
    await store.reject_run(run_id, "no plan", [], "planner")
    before = await stored(store, run_id)

    assert await end_run(store, run_id, REASON, cause="evt-late") == []
    assert await stored(store, run_id) == before
    assert await end_run(store, "run-nope", REASON, cause="evt-nope") == []
    assert [e.type for e in await store.events_caused_by(run_id)] == [RunAccepted.TYPE]


async def test_a_run_that_moved_since_it_was_read_is_not_ended(store: RunStore) -> None:
    run_id = await a_running_run(store, [["a"], ["b"]])
    seen = await stored(store, run_id)
    await store.db.query("UPDATE type::thing('run', $run) SET current_stage = 1;", {"run": run_id})

    with pytest.raises(StaleWriteError, match="moved since it was given up on"):
        await store.end_given_up_run(
            run_id,
            seen=seen["status"],
            stage=seen["current_stage"],
            ending=RunStatus.FAILED,
            error=REASON,
            failed=[],
            events=[],
            cause="evt-moved",
        )
    assert (await stored(store, run_id))["status"] == "Running"
