"""Held runs on the real stack (nats-server, SurrealDB, Nickel, nu, Cedar): a stage that
fails in a node declaring `on_failure = "hold"` leaves the run Held — its siblings'
successes and capabilities kept, nothing undone; `stratum resume` runs it again from that
stage with the definitions as they are now (a fixed script), never re-running what
succeeded; `stratum cancel` undoes a held run and ends it Cancelled.

The workflow (written per test, watched for changes): stage 0 runs `fetch`; stage 1 runs
`lint` (done at once) beside `build` (fails after a second, and holds the run); stage 2
runs `ship`. Every handler appends a line to `<workspace>/ran-<node>.log`, every undo to
`<workspace>/undo-<node>.log`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from tests.conftest import eventually, make_settings
from tests.e2e.conftest import Harness, cli, running

pytestmark = pytest.mark.asyncio(loop_scope="session")

WORKFLOW = """
let { schema, .. } = import "stratum.ncl" in
let done = schema.object { node = schema.string } in
{
  nodes = [
    { id = "fetch", trigger = "held.go", produces = ["fetched"], handler = "step.nu",
      compensate = "undo.nu" },
    { id = "lint", trigger = "held.go", consumes = ["fetched"], produces = ["linted"],
      handler = "step.nu", compensate = "undo.nu" },
    { id = "build", trigger = "held.go", consumes = ["fetched"], produces = ["built"],
      handler = "build.nu", compensate = "undo.nu", on_failure = "hold" },
    { id = "ship", trigger = "held.go", consumes = ["linted", "built"], produces = ["shipped"],
      handler = "step.nu" },
  ],
  capabilities = { fetched = done, linted = done, built = done, shipped = done },
}
"""

STEP = """
def main [] {
    let node = $env.STRATUM_NODE
    let log = ($env.STRATUM_WORKSPACE | path join $"ran-($node).log")
    $"attempt ($env.STRATUM_ATTEMPT)\\n" | save --append $log
    let produced = {fetch: "fetched", fetch2: "fetched", lint: "linted", ship: "shipped"}
    {} | insert ($produced | get $node) {node: $node} | to json -r
}
"""

BROKEN_BUILD = """
def main [] {
    let log = ($env.STRATUM_WORKSPACE | path join "ran-build.log")
    $"attempt ($env.STRATUM_ATTEMPT)\\n" | save --append $log
    sleep 1sec
    print -e "build: the compiler is broken"
    exit 3
}
"""

FIXED_BUILD = """
def main [] {
    let log = ($env.STRATUM_WORKSPACE | path join "ran-build.log")
    $"attempt ($env.STRATUM_ATTEMPT)\\n" | save --append $log
    {built: {node: "build"}} | to json -r
}
"""

UNDO = """
def main [] {
    let node = $env.STRATUM_NODE
    let log = ($env.STRATUM_WORKSPACE | path join $"undo-($node).log")
    $"attempt ($env.STRATUM_ATTEMPT)\\n" | save --append $log
    {undone: $node} | to json -r
}
"""


def write_workflow(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in {
        "held.ncl": WORKFLOW,
        "step.nu": STEP,
        "build.nu": BROKEN_BUILD,
        "undo.nu": UNDO,
    }.items():
        (folder / name).write_text(text)
    return folder


@pytest_asyncio.fixture(loop_scope="session")
async def holding(tmp_path: Path, nats_url: str) -> AsyncIterator[Harness]:
    settings = make_settings(
        tmp_path, nats_url, definitions=str(write_workflow(tmp_path / "defs")), watch=True
    )
    async with running(settings) as harness:
        yield harness


def logs(stratum: Harness, run: str, kind: str) -> dict[str, int]:
    """How many times each node's handler (`ran`) or undo (`undo`) script ran."""
    folder = stratum.server.settings.data_dir / "runs" / run / "workspace"
    return {
        path.name.removeprefix(f"{kind}-").removesuffix(".log"): len(path.read_text().splitlines())
        for path in folder.glob(f"{kind}-*.log")
    }


async def graph_version(stratum: Harness) -> str:
    async with httpx.AsyncClient(base_url=stratum.server.http_url, timeout=10) as client:
        return str((await client.get("/healthz")).json()["graph_version"])


async def events_of(stratum: Harness, run: str) -> list[Any]:
    return [e for e in await stratum.store.all_events() if e.runid == run]


async def test_a_held_run_resumes_after_the_fix_without_running_again_what_succeeded(
    holding: Harness, tmp_path: Path
) -> None:
    run = await holding.emit("held.go", {})
    view = await holding.held(run)
    assert view["held"]["stage"] == 1 and view["held"]["failed"] == ["build"]
    assert "exit code 3" in view["error"] and "the compiler is broken" in view["error"]
    assert view["compensation"] == [], "a held run undoes nothing"
    assert {n: view["nodes"][n]["status"] for n in ("fetch", "lint", "build")} == {
        "fetch": "succeeded",
        "lint": "succeeded",
        "build": "failed",
    }
    assert logs(holding, run, "undo") == {}
    record = await holding.store.get_run(run)
    assert record is not None and record["status"] == "Held" and not record.get("finished_at")

    shown = await cli(holding, "show", run)
    assert shown.returncode == 0, shown.stderr
    assert "held at stage 1: build failed" in shown.stdout
    assert f"stratum resume {run}" in shown.stdout and f"stratum cancel {run}" in shown.stdout
    listed = await cli(holding, "runs", "--status", "held", "--json")
    assert run in {r["run_id"] for r in json.loads(listed.stdout)}

    # resumed with the script still broken: held again, in the run's next resumption
    first = await cli(holding, "resume", run, "--reason", "try again", "--wait", "--json")
    assert first.returncode == 2, first.stderr  # at rest, but not Succeeded
    again = json.loads(first.stdout)
    assert (again["status"], again["resumption"]) == ("Held", 1)
    assert logs(holding, run, "ran") == {"fetch": 1, "lint": 1, "build": 2}

    # fix the script; once the new definitions are in force, resume: it succeeds
    before = await graph_version(holding)
    (tmp_path / "defs" / "build.nu").write_text(FIXED_BUILD)

    async def reloaded() -> str | None:
        version = await graph_version(holding)
        return version if version != before else None

    after: str = await eventually(reloaded, timeout=30)
    fixed = await cli(holding, "resume", run, "--reason", "compiler fixed", "--wait", "--json")
    assert fixed.returncode == 0, fixed.stderr + fixed.stdout
    done = json.loads(fixed.stdout)
    assert (done["status"], done["resumption"], done["graph_version"]) == ("Succeeded", 2, after)
    assert logs(holding, run, "ran") == {"fetch": 1, "lint": 1, "build": 3, "ship": 1}
    assert logs(holding, run, "undo") == {}
    assert all(node["status"] == "succeeded" for node in done["nodes"].values())
    assert [(r["resumption"], r["graph_version"]) for r in done["resumes"]] == [
        (1, before),
        (2, after),
    ]

    record = await holding.store.get_run(run)
    assert record is not None
    assert (record["status"], record["resumptions"], record["graph_version"]) == (
        "Succeeded",
        2,
        after,
    )
    assert [(i["action"], i["reason"], i["outcome"]) for i in record["interventions"]] == [
        ("resume", "try again", "resumed"),
        ("resume", "compiler fixed", "resumed"),
    ]
    # a new block of attempts per execution: bundles and idempotency keys never collide
    [build] = [
        e for e in (await holding.store.node_executions(run)).values() if e["node"] == "build"
    ]
    assert build["executions"] == 3
    events = await events_of(holding, run)
    types = [e.type for e in events]
    assert types.count("stratum.run.held") == 2 and types.count("stratum.run.resumed") == 2
    assert "stratum.run.failed" not in types and "stratum.run.compensate" not in types
    [final] = [e for e in events if e.type == "stratum.run.succeeded"]
    assert final.resumption == 2
    audit = await cli(holding, "audit", "export", "--ndjson", "--out", str(tmp_path / "a.ndjson"))
    assert audit.returncode == 0, audit.stderr
    [line] = [
        json.loads(text) for text in (tmp_path / "a.ndjson").read_text().splitlines() if run in text
    ]
    assert [i["outcome"] for i in line["record"]["interventions"]] == ["resumed", "resumed"]


async def test_a_held_run_cancelled_is_undone_and_ends_cancelled(holding: Harness) -> None:
    run = await holding.emit("held.go", {})
    await holding.held(run)
    stopped = await cli(holding, "cancel", run, "--reason", "give up", "--wait", "--json")
    assert stopped.returncode == 0, stopped.stderr
    view = json.loads(stopped.stdout)
    assert (view["status"], view["cancelled_by"]) == ("Cancelled", "source:stratum-cli")
    # what succeeded is undone in reverse (stage 1's lint, then stage 0's fetch), once each
    assert [(s["node"], s["status"]) for s in view["compensation"]] == [
        ("lint", "succeeded"),
        ("fetch", "succeeded"),
    ]
    assert logs(holding, run, "undo") == {"lint": 1, "fetch": 1}
    assert logs(holding, run, "ran") == {"fetch": 1, "lint": 1, "build": 1}
    record = await holding.store.get_run(run)
    assert record is not None and record["status"] == "Cancelled" and record["finished_at"]
    [entry] = record["interventions"]
    assert (entry["action"], entry["outcome"]) == ("cancel", "compensating")


async def test_only_a_held_run_resumes_and_the_policies_decide_who_may(
    holding: Harness,
) -> None:
    run = await holding.emit("held.go", {})
    await holding.held(run)
    async with httpx.AsyncClient(base_url=holding.server.http_url, timeout=10) as client:
        refused = await client.post(
            f"/api/runs/{run}/resume", json={}, headers={"Stratum-Caller": "intern"}
        )
    assert refused.status_code == 403
    assert refused.json()["policy_ids"] == ["tests-interns-may-not-resume"]
    record = await holding.store.get_run(run)
    assert record is not None and record["status"] == "Held"
    assert [(i["actor"], i["decision"]) for i in record["interventions"]] == [
        ("source:intern", "deny")
    ]

    cancelled = await cli(holding, "cancel", run, "--wait", "--json")
    assert cancelled.returncode == 0, cancelled.stderr
    not_held = await cli(holding, "resume", run)
    assert not_held.returncode == 3
    assert not_held.stderr == f"error: run {run} is not held: it is Cancelled\n"
    missing = await cli(holding, "resume", "acme-nosuchrun")
    assert missing.returncode == 5


async def test_a_resume_the_definitions_no_longer_allow_is_ignored_and_the_run_stays_held(
    holding: Harness, tmp_path: Path
) -> None:
    run = await holding.emit("held.go", {})
    await holding.held(run)
    before = await graph_version(holding)
    # the workflow now answers another topic: a held held.go run cannot be planned anew
    (tmp_path / "defs" / "held.ncl").write_text(WORKFLOW.replace('"held.go"', '"held.gone"'))

    async def reloaded() -> bool:
        return await graph_version(holding) != before

    await eventually(reloaded, timeout=30)
    asked = await cli(holding, "resume", run, "--wait")
    assert asked.returncode == 3, asked.stdout + asked.stderr
    assert asked.stderr.endswith(
        f"error: the resume of {run} was ignored: no node is triggered by topic 'held.go'\n"
    )
    record = await holding.store.get_run(run)
    assert record is not None and record["status"] == "Held"
    assert not record.get("resumptions")
    assert logs(holding, run, "ran") == {"fetch": 1, "lint": 1, "build": 1}


async def test_a_node_the_new_definitions_renamed_is_undone_as_it_was_declared_when_it_ran(
    holding: Harness, tmp_path: Path
) -> None:
    run = await holding.emit("held.go", {})
    await holding.held(run)
    before = await graph_version(holding)
    # the fix renames fetch: resumed, the run fetches again under the new name (and is
    # held again: build is still broken); fetch itself is in no graph in force any more
    renamed = WORKFLOW.replace('{ id = "fetch",', '{ id = "fetch2",')
    (tmp_path / "defs" / "held.ncl").write_text(renamed)

    async def reloaded() -> bool:
        return await graph_version(holding) != before

    await eventually(reloaded, timeout=30)
    again = await cli(holding, "resume", run, "--wait", "--json")
    assert again.returncode == 2, again.stderr
    assert json.loads(again.stdout)["status"] == "Held"
    stopped = await cli(holding, "cancel", run, "--wait", "--json")
    assert stopped.returncode == 0, stopped.stderr
    view = json.loads(stopped.stdout)
    assert view["status"] == "Cancelled"
    assert {(s["node"], s["status"]) for s in view["compensation"]} == {
        ("fetch", "succeeded"),
        ("fetch2", "succeeded"),
        ("lint", "succeeded"),
    }
    assert logs(holding, run, "undo") == {"fetch": 1, "fetch2": 1, "lint": 1}
