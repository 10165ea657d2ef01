"""Several projector instances writing one run's view: the version check loses nothing.

Each instance has its own cache (as separate processes would), and they share the real
embedded database. With the version check every event of the run ends up in the stored
view; the same race without it is shown to lose updates, so the check is what saves them.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
import pytest_asyncio

from functions.projector.app import Projector
from stratum.events import Envelope, NodeSucceeded, Payload, RunAccepted, emit
from stratum.store import Database, RunStore

T0 = datetime(2026, 1, 1, tzinfo=UTC)
NODES = 24
WRITERS = 4
SEED = 20261122


@pytest_asyncio.fixture(loop_scope="session")
async def store(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RunStore]:
    database = await Database.open(
        f"surrealkv://{tmp_path_factory.mktemp('lost-update')}/db",
        namespace="t",
        database="t",
        durable_writes=False,
    )
    runs = RunStore(database)
    await runs.ensure_schema()
    yield runs
    await database.close()


def run_events(run_id: str) -> list[Envelope]:
    payloads: list[Payload] = [
        RunAccepted(
            topic="t.x",
            trigger_subject="s",
            event_id=run_id,
            event_type="t.x",
            event_source="src",
            actor="a",
            event_data={},
            inputs_hash="h",
        )
    ]
    payloads += [
        NodeSucceeded(
            stage=0, node=f"n{i:02}", attempts=1, duration_ms=1, outputs_hash="x", bundle="/b"
        )
        for i in range(NODES)
    ]
    return [
        emit(
            payload,
            cause=f"cause-{i}",
            run_id=run_id,
            tenant="acme",
            source="test",
            now=T0 + timedelta(milliseconds=i),
            discriminator=str(i),
        )
        for i, payload in enumerate(payloads)
    ]


async def race(store: RunStore, run_id: str, *, versioned: bool) -> set[str]:
    """WRITERS instances each project a share of the run's events concurrently, after all
    of them have cached the same first view; returns the nodes the stored view holds."""
    print(f"lost-update race seed {SEED} versioned={versioned}")
    rng = random.Random(SEED)
    first, *rest = run_events(run_id)
    writers = [Projector(store, coalesce=0.0, versioned=versioned) for _ in range(WRITERS)]
    for writer in writers:  # every instance starts from the same cached view
        await writer.project(first)
    rng.shuffle(rest)
    shares = [rest[i::WRITERS] for i in range(WRITERS)]

    async def feed(writer: Projector, share: list[Envelope]) -> None:
        for event in share:
            await writer.project(event)
            await asyncio.sleep(rng.uniform(0, 0.003))

    await asyncio.gather(*(feed(w, share) for w, share in zip(writers, shares, strict=True)))
    stored = await store.get_view(run_id)
    assert stored is not None
    return set(stored["nodes"])


@pytest.mark.asyncio(loop_scope="session")
async def test_concurrent_projectors_lose_no_update(store: RunStore) -> None:
    nodes = await race(store, "run-versioned", versioned=True)
    assert nodes == {f"n{i:02}" for i in range(NODES)}
    history = await store.history("run-versioned")
    assert len(history) == NODES + 1


@pytest.mark.asyncio(loop_scope="session")
async def test_the_same_race_without_the_version_check_loses_updates(store: RunStore) -> None:
    nodes = await race(store, "run-unversioned", versioned=False)
    assert len(nodes) < NODES, "without the version check, some instance overwrote another"
