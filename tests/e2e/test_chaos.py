"""Chaos: `stratum up` killed with SIGKILL again and again while pipelines run.

Pipelines of three stages (a, b -> c -> d; a quarter fail at d and are compensated) run
as a real `stratum up` process (embedded SurrealDB on disk, the session's nats-server)
that is killed with SIGKILL at named crash points (it kills itself there, see
`stratum.runtime.faults`) and at random moments, and started again each time. The scripts keep a
ledger (tests/e2e/ledger.py): every execution, and each effect, performed once per
(run, node) as docs/guarantees.md tells script authors to, and undone once. At the end
every run must have Succeeded (or been Compensated, for those asked to fail) with each
effect done — and undone — exactly once, no node run again after its success was
recorded, and no script left running.

Seeded and bounded; the figures are printed. A longer variant: `make chaos`.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest

from stratum.bus.subjects import Subjects
from tests.e2e.ledger import TOPIC, Ledger, write_workflow
from tests.e2e.stratum_process import Instance, live_scripts, up_env

pytestmark = pytest.mark.asyncio(loop_scope="session")

SEED = int(os.environ.get("STRATUM_CHAOS_SEED", "20261122"))
PIPELINES = int(os.environ.get("STRATUM_CHAOS_PIPELINES", "100"))
NAMED_POINTS = [
    "ingest.after-commit",
    "ingest.after-publish",
    "planner.after-commit",
    "stage-executor.nodes-starting",
    "stage-executor.node-recorded",
    "stage-executor.after-commit",
    "planner.after-publish",
    "stage-executor.after-publish",
    "compensator.step-starting",
    "projector.after-commit",
    "compensator.step-recorded",
    "projector.after-publish",
    "compensator.after-commit",
]
# every named point once, with a random kill between two: 26 kills
KILLS = int(os.environ.get("STRATUM_CHAOS_KILLS", str(2 * len(NAMED_POINTS))))


async def statuses(http: str, runs: list[str]) -> dict[str, dict[str, Any]]:
    views = {}
    async with httpx.AsyncClient(base_url=http, timeout=30) as client:
        for run in runs:
            response = await client.get(f"/api/runs/{run}")
            if response.status_code == 200:
                views[run] = response.json()
    return views


@pytest.mark.timeout(900)
async def test_sigkill_anywhere_loses_nothing_and_repeats_no_effect(
    tmp_path: Path, nats_url: str
) -> None:
    rng = random.Random(SEED)
    print(f"\nchaos seed {SEED} (STRATUM_CHAOS_SEED), {PIPELINES} pipelines, {KILLS} kills")
    definitions, data_dir = tmp_path / "defs", tmp_path / "data"
    write_workflow(definitions)
    data_dir.mkdir()
    ledger = Ledger(tmp_path / "ledger").create()
    prefix = f"chaos{uuid.uuid4().hex[:8]}"
    env = up_env(
        data_dir,
        definitions,
        nats_url,
        prefix,
        STRATUM_STUCK_AFTER="20",
        STRATUM_WATCHDOG_INTERVAL="2",
    )
    instance = Instance(env, data_dir)
    try:
        await run_chaos(instance, rng, ledger, prefix, nats_url)
    finally:
        instance.kill()  # whatever happened, leave nothing running


async def run_chaos(
    instance: Instance, rng: random.Random, ledger: Ledger, prefix: str, nats_url: str
) -> None:
    data_dir = instance.data_dir
    await instance.start()

    nc = await nats.connect(nats_url)
    try:
        runs, failing = await ledger.emit(
            nc.jetstream(), Subjects(prefix).event("acme", TOPIC), PIPELINES, source="chaos"
        )
    finally:
        await nc.close()

    named = random_kills = 0
    for kill in range(KILLS):
        if kill % 2 == 0:
            point = NAMED_POINTS[(kill // 2) % len(NAMED_POINTS)]
            instance.kill()
            await instance.start(crash_at=f"{point}:{rng.randint(1, 8)}")
            if await instance.died_within(8):
                named += 1
                continue
        await asyncio.sleep(rng.uniform(0.3, 2.5))
        instance.kill()
        random_kills += 1
        await instance.start()

    # the last instance lives: every run must end, then nothing may run again
    instance.kill()
    await instance.start()
    deadline = time.monotonic() + 240
    views: dict[str, dict[str, Any]] = {}
    while time.monotonic() < deadline:
        views = await statuses(instance.http, runs)
        if len(views) == len(runs) and all(
            v.get("finished") and v.get("projected") for v in views.values()
        ):
            break
        await asyncio.sleep(1)
    instance.stop()

    audit = ledger.audit(views, runs, failing)
    orphans = live_scripts(data_dir)
    print(
        f"chaos: kills {named + random_kills} (named {named}, random {random_kills}); "
        f"completed {len(audit['completed'])} ({len(failing)} compensated) / "
        f"lost {len(audit['lost'])} / "
        f"duplicated {len(audit['duplicated'])}; effects missing {len(audit['missing'])}; "
        f"nodes executed again after a crash {audit['reexecuted']}; "
        f"run again after success {len(audit['rerun_after_success'])}; "
        f"scripts left running {len(orphans)}"
    )
    assert named + random_kills >= KILLS
    assert not audit["lost"], f"runs that never finished: {audit['lost'][:5]}"
    assert not audit["wrong_status"], audit["wrong_status"]
    assert len(audit["completed"]) == PIPELINES
    assert not audit["duplicated"], f"effects done twice: {audit['duplicated'][:5]}"
    assert not audit["missing"], f"effects never done: {audit['missing'][:5]}"
    assert not audit["not_undone"], f"effects never undone: {audit['not_undone'][:5]}"
    assert not audit["rerun_after_success"], audit["rerun_after_success"][:5]
    assert not orphans, f"scripts left running: {orphans}"
