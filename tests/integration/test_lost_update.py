"""Several projector instances writing one run's view: the version check loses nothing.

Each instance has its own cache (as separate processes would), and they share the real
embedded database. With the version check every event of the run ends up in the stored
view; the same race without it is shown to lose updates, so the check is what saves them.
"""

from __future__ import annotations

import asyncio
import random

import pytest

from functions.projector.app import Projector
from stratum.events import Envelope, NodeSucceeded, Payload
from stratum.store import RunStore
from tests.events import accepted, run_events

NODES = 24
WRITERS = 4
SEED = 20261122


def run_of_many_nodes(run_id: str) -> list[Envelope]:
    payloads: list[Payload] = [accepted(event_id=run_id)]
    payloads += [
        NodeSucceeded(
            stage=0, node=f"n{i:02}", attempts=1, duration_ms=1, outputs_hash="x", bundle="/b"
        )
        for i in range(NODES)
    ]
    return run_events(payloads, run_id=run_id)


async def race(store: RunStore, run_id: str, *, versioned: bool) -> set[str]:
    """WRITERS instances each project a share of the run's events concurrently, after all
    of them have cached the same first view; returns the nodes the stored view holds."""
    print(f"lost-update race seed {SEED} versioned={versioned}")
    rng = random.Random(SEED)
    first, *rest = run_of_many_nodes(run_id)
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
