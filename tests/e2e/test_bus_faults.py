"""Faults of the bus itself: repeated publisher events, and nats-server dying mid-run.

Both run the ledger workflow (tests/e2e/ledger.py) in-process against a nats-server this
module starts, so it can kill it by PID and start it again on the same port and store.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import nats
import pytest
import pytest_asyncio

from stratum.bus.local_server import LocalNatsServer
from stratum.ids import run_id
from stratum_host.server import StratumServer
from tests.conftest import make_settings
from tests.e2e.conftest import Harness
from tests.e2e.ledger import TOPIC, Ledger, write_workflow

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(loop_scope="session")
async def bus(tmp_path: Path) -> AsyncIterator[LocalNatsServer]:
    server = LocalNatsServer(tmp_path / "nats")
    await server.start()
    try:
        yield server
    finally:
        server.stop()


async def start_stratum(tmp_path: Path, url: str, **overrides: Any) -> Harness:
    write_workflow(tmp_path / "defs")
    settings = make_settings(tmp_path, url, definitions=str(tmp_path / "defs"), **overrides)
    server = StratumServer(settings)
    await server.start(http=False)
    return Harness(server, await nats.connect(url, max_reconnect_attempts=-1))


async def stop_stratum(stratum: Harness) -> None:
    await stratum.nc.close()
    await stratum.server.stop()


async def publish(stratum: Harness, ident: str, ledger: Ledger, *, msg_id: bool = True) -> None:
    """A publisher's CloudEvent; a careful publisher sets `Nats-Msg-Id` to its id."""
    await stratum.nc.jetstream().publish(
        stratum.subjects.event("acme", TOPIC),
        ledger.cloudevent(ident),
        headers={"Nats-Msg-Id": ident} if msg_id else None,
    )


async def runs_for_event(stratum: Harness, ident: str) -> int:
    rows = (
        await stratum.store.db.query(
            "SELECT count() AS n FROM run WHERE event_id = $id GROUP ALL;", {"id": ident}
        )
    )[0]
    return int(rows[0]["n"]) if rows else 0


async def test_an_event_published_again_inside_and_after_the_window_makes_one_run(
    tmp_path: Path, bus: LocalNatsServer
) -> None:
    stratum = await start_stratum(tmp_path, bus.url, duplicate_window=1.0)
    ledger = Ledger(tmp_path / "ledger").create()
    try:
        idents = [str(uuid.uuid4()) for _ in range(4)]
        for ident in idents:  # inside the window: JetStream drops the repeats
            for _ in range(3):
                await publish(stratum, ident, ledger)
            await publish(stratum, ident, ledger, msg_id=False)  # no dedupe id at all
        await asyncio.sleep(1.5)
        for ident in idents:  # past the window: only Stratum's own key stops it
            await publish(stratum, ident, ledger)

        views = {run_id("acme", i): await stratum.finished(run_id("acme", i)) for i in idents}
        await asyncio.sleep(1.0)  # let any repeat that slipped through do its worst
        assert [await runs_for_event(stratum, i) for i in idents] == [1, 1, 1, 1]
        audit = ledger.audit(views, list(views))
        assert len(audit["completed"]) == len(idents)
        assert not audit["duplicated"] and not audit["missing"]
        assert audit["reexecuted"] == 0  # a repeated event never re-ran a node
    finally:
        await stop_stratum(stratum)


async def test_nats_server_killed_and_restarted_mid_run_loses_and_repeats_nothing(
    tmp_path: Path, bus: LocalNatsServer
) -> None:
    stratum = await start_stratum(tmp_path, bus.url)
    ledger = Ledger(tmp_path / "ledger").create()
    try:
        idents = [str(uuid.uuid4()) for _ in range(12)]
        for ident in idents:
            await publish(stratum, ident, ledger)
        await asyncio.sleep(0.8)  # pipelines in flight, some stages running
        assert bus.process is not None
        bus.process.kill()  # SIGKILL: the server we started, by its PID
        bus.process.wait()
        await asyncio.sleep(1.0)
        await bus.start()  # same port, same JetStream store

        runs = [run_id("acme", i) for i in idents]
        views = {run: await stratum.finished(run, timeout=120) for run in runs}
        audit = ledger.audit(views, runs)
        print(
            f"nats restart: completed {len(audit['completed'])} / lost {len(audit['lost'])} / "
            f"duplicated {len(audit['duplicated'])}; re-executed {audit['reexecuted']}"
        )
        assert len(audit["completed"]) == len(runs)
        assert not audit["duplicated"] and not audit["missing"]
        assert not audit["rerun_after_success"]
    finally:
        await stop_stratum(stratum)
