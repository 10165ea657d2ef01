"""A run whose failure left nothing to undo ends Failed, with its error and no saga (in the
database before its `run.failed` is on the bus), and frees its tenant's slot; one with
something to undo is still compensated. Through the real stack and the real CLI
(`emit --wait`, `show`, `runs`), which read the HTTP API.

The workflow (written per test): `solo` runs alone and fails as the event's `mode` says
(prints what is not JSON, prints JSON its schema refuses, or outlives its timeout); it has
a compensate script, which must not run, since `solo` never succeeded. `pair.plain` runs
`plain` (no compensate script) then `after-plain`, which fails; `pair.kept` runs `kept`
(with one) then `after-kept`, which fails. `ok` just succeeds.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from stratum.config import Settings
from stratum.events import CompensateRun, RunCompensated, RunFailed
from tests.conftest import Vault, eventually, make_settings
from tests.e2e.conftest import Harness, cli, running

pytestmark = pytest.mark.asyncio(loop_scope="session")

WORKFLOW = """
let { schema, .. } = import "stratum.ncl" in
let done = schema.object { n = schema.integer } in
{
  nodes = [
    { id = "solo", trigger = "solo.go", produces = ["said"], handler = "solo.nu",
      compensate = "undo.nu", timeout = 2 },
    { id = "plain", trigger = "pair.plain", produces = ["made"], handler = "make.nu" },
    { id = "after-plain", trigger = "pair.plain", consumes = ["made"], handler = "fail.nu" },
    { id = "kept", trigger = "pair.kept", produces = ["kept"], handler = "make.nu",
      compensate = "undo.nu" },
    { id = "after-kept", trigger = "pair.kept", consumes = ["kept"], handler = "fail.nu" },
    { id = "ok", trigger = "ok.go", produces = ["fine"], handler = "make.nu" },
  ],
  capabilities = { said = done, made = done, kept = done, fine = done },
}
"""

SOLO = """
def main [] {
    let mode = ($in | from json | get event.mode)
    if $mode == "garbage" { print "this is not json"; return }
    if $mode == "schema" { {said: {n: "three"}} | to json -r | print; return }
    sleep 30sec
    {said: {n: 1}} | to json -r
}
"""

MAKE = """
def main [] {
    let produced = {plain: "made", kept: "kept", ok: "fine"} | get $env.STRATUM_NODE
    {} | insert $produced {n: 1} | to json -r
}
"""

FAIL = """def main [] { print -e "failing on purpose"; exit 1 }"""

UNDO = """
def main [] {
    $"($env.STRATUM_NODE)\n" | save --append ($env.STRATUM_WORKSPACE | path join "undone.log")
    {undone: $env.STRATUM_NODE} | to json -r
}
"""

ERRORS = {
    "garbage": "node solo: stdout is not JSON (first",
    "schema": "node solo: output said.n: 'three' is not of type 'integer'",
    "slow": "node solo: timed out after 2s",
}


def write_workflow(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    scripts = {"solo.nu": SOLO, "make.nu": MAKE, "fail.nu": FAIL, "undo.nu": UNDO}
    for name, text in {"flow.ncl": WORKFLOW, **scripts}.items():
        (folder / name).write_text(text)
    return folder


def settings_for(tmp_path: Path, nats_url: str, openbao: Vault, **extra: Any) -> Settings:
    return make_settings(
        tmp_path,
        nats_url,
        definitions=str(write_workflow(tmp_path / "defs")),
        vault_addr=openbao.addr,
        vault_token=openbao.token,
        **extra,
    )


@pytest_asyncio.fixture(loop_scope="session")
async def flows(tmp_path: Path, nats_url: str, openbao: Vault) -> AsyncIterator[Harness]:
    async with running(settings_for(tmp_path, nats_url, openbao)) as harness:
        yield harness


async def emit_and_wait(stratum: Harness, topic: str, data: dict[str, Any]) -> dict[str, Any]:
    """`stratum emit --wait --json`: the finished run's view; it exits 2, since the run
    did not succeed."""
    result = await cli(
        stratum, "emit", topic, "--tenant", "acme", "--data", json.dumps(data), "--wait", "--json"
    )
    assert result.returncode == 2, result.stderr
    view: dict[str, Any] = json.loads(result.stdout)
    return view


async def run_types(stratum: Harness, run: str) -> list[str]:
    return [e.type for e in await stratum.store.all_events() if e.runid == run]


def undone(stratum: Harness, run: str) -> list[str]:
    log = stratum.server.settings.data_dir / "runs" / run / "workspace" / "undone.log"
    return log.read_text().splitlines() if log.is_file() else []


async def assert_ended_failed(stratum: Harness, view: dict[str, Any], error: str) -> None:
    """Failed, finished, with the error and no saga: in the view, the run's record and
    the event log (no `run.compensate`, no `run.compensated`)."""
    run = view["run_id"]
    assert (view["status"], view["finished"]) == ("Failed", True), view
    assert error in view["error"]
    assert view["compensation"] == []
    assert view["finished_at"] is not None and view["duration_ms"] is not None
    record = await stratum.store.get_run(run)
    assert record is not None
    assert (record["status"], error in record["error"]) == ("Failed", True)
    assert record["finished_at"] is not None
    types = await run_types(stratum, run)
    assert RunFailed.TYPE in types
    assert CompensateRun.TYPE not in types and RunCompensated.TYPE not in types
    assert await stratum.store.compensations(run) == {}
    assert undone(stratum, run) == []


@pytest.mark.parametrize("mode", sorted(ERRORS))
async def test_a_lone_node_that_fails_ends_the_run_failed_with_its_error(
    flows: Harness, mode: str
) -> None:
    view = await emit_and_wait(flows, "solo.go", {"mode": mode})
    await assert_ended_failed(flows, view, ERRORS[mode])
    assert view["nodes"]["solo"]["status"] == "failed"


async def test_show_and_runs_say_failed_with_the_error(flows: Harness) -> None:
    view = await emit_and_wait(flows, "solo.go", {"mode": "garbage"})
    run = view["run_id"]

    shown = await cli(flows, "show", run)
    assert shown.returncode == 0, shown.stderr
    headline = next(line for line in shown.stdout.splitlines() if run in line)
    assert "Failed" in headline
    assert f"error: {ERRORS['garbage']}" in shown.stdout
    assert "compensation" not in shown.stdout

    listed = await cli(flows, "runs", "--json")
    assert listed.returncode == 0, listed.stderr
    (row,) = [r for r in json.loads(listed.stdout) if r["run_id"] == run]
    assert (row["status"], row["finished"]) == ("Failed", True)


async def test_nodes_that_succeeded_without_an_undo_leave_nothing_to_undo(flows: Harness) -> None:
    view = await emit_and_wait(flows, "pair.plain", {})
    await assert_ended_failed(flows, view, "node after-plain: exit code 1: failing on purpose")
    assert view["nodes"]["plain"]["status"] == "succeeded"  # shown, but not a saga step


async def test_a_node_with_an_undo_that_succeeded_is_still_compensated(flows: Harness) -> None:
    view = await emit_and_wait(flows, "pair.kept", {})
    run = view["run_id"]
    assert (view["status"], view["finished"]) == ("Compensated", True), view
    assert "node after-kept: exit code 1" in view["error"]
    assert [(s["node"], s["status"]) for s in view["compensation"]] == [("kept", "succeeded")]
    record = await flows.store.get_run(run)
    assert record is not None and record["status"] == "Compensated"
    types = await run_types(flows, run)
    assert CompensateRun.TYPE in types and RunCompensated.TYPE in types
    assert undone(flows, run) == ["kept"]


async def test_a_run_ending_failed_frees_its_tenants_slot(
    tmp_path: Path, nats_url: str, openbao: Vault
) -> None:
    """With one run at a time, a run queued behind one that ends Failed starts when it
    ends (the watchdog, 120 s away, plays no part)."""
    settings = settings_for(
        tmp_path, nats_url, openbao, tenant_limits={"acme": {"max_concurrent_runs": 1}}
    )
    async with running(settings, http=False) as stratum:
        first = await stratum.emit("solo.go", {"mode": "slow"})

        async def running_first() -> bool:
            record = await stratum.store.get_run(first)
            return bool(record and record["status"] == "Running")

        await eventually(running_first)
        second = await stratum.emit("ok.go", {})

        async def queued() -> bool:
            record = await stratum.store.get_run(second)
            return bool(record and record.get("queued_at"))

        await eventually(queued)
        assert (await stratum.finished(first))["status"] == "Failed"
        assert (await stratum.finished(second, timeout=60))["status"] == "Succeeded"


async def test_the_run_is_failed_in_the_database_before_its_run_failed_is_on_the_bus(
    flows: Harness,
) -> None:
    statuses: list[str] = []

    async def check(msg: Any) -> None:
        event = json.loads(msg.data)
        record = await flows.store.get_run(event["runid"])
        statuses.append(str((record or {}).get("status")))

    subscription = await flows.nc.subscribe(flows.subjects.internal(RunFailed.TYPE), cb=check)
    try:
        run = await flows.emit("solo.go", {"mode": "garbage"})
        await flows.finished(run)

        async def checked() -> list[str]:
            return statuses

        assert await eventually(checked) == ["Failed"]
    finally:
        await subscription.unsubscribe()
