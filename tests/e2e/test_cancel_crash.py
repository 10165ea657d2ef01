"""A cancel interrupted by SIGKILL is resumed like any other step.

A real `stratum up` (embedded SurrealDB on disk, the session's nats-server) runs the
cancel tests' workflow (tests/e2e/test_cancel.py): `slow` is running beside a finished
`quick` when the run is cancelled. The process kills itself at a named crash point on the
cancel's path (`stratum.runtime.faults`): after the planner stored the cancel but before
it announced it, after the stage executor stored the stopped stage and the order to
compensate but before it announced them, and in the compensation (a step recorded, the
next not begun; a step marked running, its script not yet started). Started again, the
run still ends Cancelled, every compensate script ran exactly once (in reverse), nothing
after the cancelled stage ran, and no script is left running.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import nats
import orjson
import pytest

from stratum.bus.subjects import Subjects
from stratum.ids import run_id
from tests.e2e.stratum_process import Instance, live_scripts, up_env
from tests.e2e.test_cancel import alive, write_workflow

pytestmark = pytest.mark.asyncio(loop_scope="session")

# (crash point, how many times it is passed before the process dies there); the run is
# the only one, so the counts are the run's own: the planner's 1st commit is its plan,
# the 2nd the cancel; the stage executor's 1st is stage 0, the 2nd the stopped stage 1;
# the compensator undoes quick, then second, then first.
CRASHES = [
    "planner.after-commit:2",
    "stage-executor.after-commit:2",
    "compensator.step-recorded:1",
    "compensator.step-starting:2",
]


def workspace(data_dir: Path, run: str) -> Path:
    return data_dir / "runs" / run / "workspace"


def undo_logs(data_dir: Path, run: str) -> dict[str, list[str]]:
    """Each node's compensation log: one line per time its undo script ran."""
    return {
        path.name.removeprefix("undo-").removesuffix(".log"): path.read_text().splitlines()
        for path in workspace(data_dir, run).glob("undo-*.log")
    }


async def view_of(http: str, run: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=http, timeout=10) as client:
        response = await client.get(f"/api/runs/{run}")
    return response.json() if response.status_code == 200 else {}


async def until(what: str, check: Any, seconds: float) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = await check()
        if found:
            return found
        await asyncio.sleep(0.1)
    raise AssertionError(f"{what} within {seconds} s")


@pytest.mark.timeout(240)
@pytest.mark.parametrize("crash_at", CRASHES)
async def test_a_cancel_killed_anywhere_still_ends_cancelled_undoing_each_node_once(
    tmp_path: Path, nats_url: str, crash_at: str
) -> None:
    definitions, data_dir = write_workflow(tmp_path / "defs"), tmp_path / "data"
    data_dir.mkdir()
    prefix = f"cancelcrash{uuid.uuid4().hex[:8]}"
    instance = Instance(up_env(data_dir, definitions, nats_url, prefix), data_dir)
    try:
        await instance.start(crash_at=crash_at)
        ident = str(uuid.uuid4())
        nc = await nats.connect(nats_url)
        try:
            event = {"specversion": "1.0", "id": ident, "source": "tests", "type": "halt.go"}
            await nc.jetstream().publish(
                Subjects(prefix).event("acme", "halt.go"), orjson.dumps(event)
            )
        finally:
            await nc.close()
        run = run_id("acme", ident)
        pidfile = workspace(data_dir, run) / "slow.pid"

        async def slow_running() -> int | None:
            quick = (await view_of(instance.http, run)).get("nodes", {}).get("quick", {})
            text = pidfile.read_text().strip() if pidfile.is_file() else ""
            return int(text) if text and quick.get("status") == "succeeded" else None

        pid = await until("slow runs beside a finished quick", slow_running, 60)
        async with httpx.AsyncClient(base_url=instance.http, timeout=10) as client:
            asked = await client.post(
                f"/api/runs/{run}/cancel",
                json={"reason": "stop it"},
                headers={"Stratum-Caller": "tests"},
            )
        assert asked.status_code == 202, asked.text
        assert await instance.died_within(60), f"stratum up never reached {crash_at}"

        await instance.start()  # no crash point: it resumes what the killed one left

        async def ended() -> dict[str, Any] | None:
            view = await view_of(instance.http, run)
            return view if view.get("finished") and view.get("projected") else None

        view = await until("the run ends", ended, 120)
        assert view["status"] == "Cancelled", view.get("error")
        assert (view["cancelled_by"], view["cancel_reason"]) == ("source:tests", "stop it")
        assert [(s["node"], s["status"]) for s in view["compensation"]] == [
            ("quick", "succeeded"),
            ("second", "succeeded"),
            ("first", "succeeded"),
        ]
        logs = undo_logs(data_dir, run)
        assert {node: len(lines) for node, lines in logs.items()} == {
            "quick": 1,
            "second": 1,
            "first": 1,
        }, "each compensation ran once; the killed slow had nothing to undo"
        assert view["nodes"]["slow"]["status"] == "cancelled"
        assert view["nodes"].get("after", {}).get("status", "pending") == "pending"
        assert not alive(pid), "slow's process group was killed (or swept at start-up)"
        instance.stop()
        assert not live_scripts(data_dir), "no script is left running"
    finally:
        instance.kill()
