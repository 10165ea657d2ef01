"""Several instances of every function on the same durables (queue semantics): the work is
shared, nothing is lost, nothing runs twice, and every run's view holds all its events
although each projector instance caches views of its own."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import nats
import pytest

from stratum_host.server import StratumServer
from tests.conftest import make_settings
from tests.e2e.conftest import Harness
from tests.e2e.ledger import TOPIC, Ledger, write_workflow

pytestmark = pytest.mark.asyncio(loop_scope="session")
INSTANCES = 3
PIPELINES = 24


async def test_three_instances_share_the_work_and_lose_no_update(
    tmp_path: Path, nats_url: str
) -> None:
    write_workflow(tmp_path / "defs")
    server = StratumServer(make_settings(tmp_path, nats_url, definitions=str(tmp_path / "defs")))
    await server.start(http=False)
    for _ in range(INSTANCES - 1):
        await server.add_instance()
    nc = await nats.connect(nats_url)
    stratum = Harness(server, nc)
    ledger = Ledger(tmp_path / "ledger").create()
    try:
        runs, failing = await ledger.emit(
            nc.jetstream(), stratum.subjects.event("acme", TOPIC), PIPELINES
        )

        views = {run: await stratum.finished(run, timeout=120) for run in runs}

        audit = ledger.audit(views, runs, failing)
        assert not audit["wrong_status"] and len(audit["completed"]) == PIPELINES
        assert not audit["duplicated"] and not audit["missing"] and not audit["not_undone"]
        assert audit["reexecuted"] == 0  # no crash here: every node ran exactly once
        for run, view in views.items():  # every node's outcome made it into its view
            statuses = Counter(node["status"] for node in view["nodes"].values())
            expected = {"succeeded": 3, "failed": 1} if run in failing else {"succeeded": 4}
            assert statuses == expected, (run, view["nodes"])
        # the instances really shared the work: each function ran on several of them
        handled = Counter(runner.function.name for runner in server.runners if runner.handled > 0)
        assert handled["stage-executor"] >= 2 and handled["projector"] >= 2, handled
    finally:
        await nc.close()
        await server.stop()
