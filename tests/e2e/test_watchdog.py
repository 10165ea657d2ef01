"""Stuck-run detection against the real stack: a run whose driving event was committed
but never published (its instance died, the message that caused it was lost) is found
by the watchdog once past its deadline and driven to the end, exactly once."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
import pytest_asyncio

from functions.ingest import core as ingest
from stratum.bus.subjects import Subjects
from stratum.clock import utc_now
from stratum.store import RunStore
from tests.conftest import make_settings
from tests.e2e.conftest import Harness, running

pytestmark = pytest.mark.asyncio(loop_scope="session")
SAMPLE = "nickel/examples/sample-crate"


@pytest_asyncio.fixture(loop_scope="session")
async def watched(tmp_path: Path, nats_url: str) -> AsyncIterator[Harness]:
    settings = make_settings(tmp_path, nats_url, stuck_after=0.5, watchdog_interval=0.2)
    async with running(settings, http=False) as harness:
        yield harness


async def accepted_but_never_announced(store: RunStore, subjects: Subjects) -> str:
    """What ingest commits for an event, without the publish that should follow."""
    subject = subjects.event("acme", "crate.push")
    body = orjson.dumps(
        {
            "specversion": "1.0",
            "id": str(uuid.uuid4()),
            "source": "tests",
            "type": "crate.push",
            "data": {"source": SAMPLE},
        }
    )
    incoming = ingest.parse_incoming(subject, {}, body, subjects)
    run, accepted = ingest.accept(incoming, actor="tests", now=utc_now())
    assert await store.accept_run(run, accepted, cause=run["id"])
    return str(run["id"])


async def test_a_run_stuck_after_its_commit_is_driven_to_the_end(watched: Harness) -> None:
    run = await accepted_but_never_announced(watched.store, watched.subjects)

    view = await watched.finished(run, timeout=60)

    assert view["status"] == "Succeeded", view.get("error")
    record = await watched.store.get_run(run)
    assert record is not None and record["redrives"] >= 1
    # driven again, yet every node ran once
    executions = await watched.store.node_executions(run)
    assert {node: e["executions"] for node, e in executions.items()} == {
        "build-crate": 1,
        "fmt-crate": 1,
        "lint-crate": 1,
    }


async def test_a_finished_run_is_never_driven(watched: Harness) -> None:
    run = await watched.emit("crate.push", {"source": SAMPLE})
    await watched.finished(run)
    assert watched.server.watchdog is not None
    assert run not in await watched.server.watchdog.sweep()
    record = await watched.store.get_run(run)
    assert record is not None and not record.get("redrives")
