"""What a run costs is counted where it goes out: every SurrealDB round trip in
`Database.query` (write or read), every event the functions publish in `Publisher`; and
the bench reads nats-server's side (stored, delivered) from the streams. Real embedded
SurrealDB, the session's real nats-server."""

from __future__ import annotations

import uuid

import nats
import pytest

from bench.cost import Bus
from stratum.bus.subjects import Subjects
from stratum.events import NodeStarted, RunPlanned
from stratum.runtime.jetstream import ensure_streams
from stratum.runtime.publisher import Publisher
from stratum.store import RunStore
from stratum.store.database import StoreError
from stratum.telemetry.metrics import REGISTRY
from tests.events import accepted, run_events


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def round_trips() -> dict[str, float]:
    return {kind: sample("stratum_db_transactions_total", kind=kind) for kind in ("write", "read")}


@pytest.mark.asyncio(loop_scope="session")
async def test_every_round_trip_is_counted_by_kind(store: RunStore) -> None:
    before = round_trips()
    for version in ("v1", "v2", "v3"):
        await store.save_graph(version, {"nodes": []})  # one UPSERT each
    await store.get_graph("v1")
    await store.get_run("nope")
    await store.db.transaction("CREATE type::thing('t', 1) CONTENT {n: 1};")
    with pytest.raises(StoreError):  # a failed query was a round trip all the same
        await store.db.query("SELECT * FROM;")
    after = round_trips()
    assert {kind: after[kind] - before[kind] for kind in after} == {"write": 4, "read": 3}


@pytest.mark.asyncio(loop_scope="session")
async def test_published_events_are_counted_and_the_bus_counts_stored_and_delivered(
    nats_url: str,
) -> None:
    subjects = Subjects(f"c{uuid.uuid4().hex[:8]}")
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    try:
        await ensure_streams(js, subjects)
        publisher = Publisher(js, subjects)
        bus = Bus(js, [subjects.events_stream, subjects.runs_stream])
        events = run_events(
            [
                accepted(),
                RunPlanned(graph_version="v", stages=[["a"]]),
                NodeStarted(stage=0, node="a"),
            ],
            run_id=f"run-{uuid.uuid4().hex[:8]}",
        )
        consumer = await js.pull_subscribe(
            f"{subjects.prefix}.>", durable="counted", stream=subjects.runs_stream
        )
        start = await bus.counts()
        accepted_before = sample("stratum_events_published_total", type="stratum.run.accepted")

        await publisher.publish(events[0])
        await publisher.publish_all(events[1:])
        await publisher.publish(events[0])  # acknowledged again, but a duplicate: not stored
        await publisher.redrive(events[2], 1)  # a fresh message id: stored
        messages = await consumer.fetch(5, timeout=5)
        for message in messages:
            await message.ack()
        await bus.settle()  # nothing pending, nothing unacked
        end = await bus.counts()

        assert end.published - start.published == 5
        assert (
            sample("stratum_events_published_total", type="stratum.run.accepted") - accepted_before
            == 2
        )
        assert (end.stored - start.stored, len(messages)) == (4, 4)
        assert end.delivered - start.delivered == 4
    finally:
        for stream in (subjects.events_stream, subjects.runs_stream, subjects.dead_stream):
            await js.delete_stream(stream)
        await nc.close()
