"""Cancelling runs on the real stack (nats-server, SurrealDB, Nickel, nu, Cedar): a run
stopped in the middle of a parallel stage has its running node's whole process group
killed and what succeeded undone in reverse, and ends Cancelled; a queued run ends
Cancelled having run nothing; the policies may refuse a cancel (and the refusal is kept);
with signatures required, a publisher cancels its own tenant's runs and the operator any;
a run that has ended answers with a clear error and exit code.

The workflow (written per test): stage 0 runs `first` and `second`, stage 1 runs `quick`
(done at once) beside `slow` (a shell that sleeps, its pid written to the workspace),
stage 2 runs `after`. Every undo appends a line to `<workspace>/undo-<node>.log`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from stratum.bus.nkeys import CORE_IDENTITY
from stratum.events import CompensationRecorded
from stratum.ids import derived_event_id
from stratum_host.cli.signed import SignedRequest
from tests.conftest import Vault, eventually, make_settings
from tests.e2e.conftest import Harness, cli, running

pytestmark = pytest.mark.asyncio(loop_scope="session")

WORKFLOW = """
let { schema, .. } = import "stratum.ncl" in
let done = schema.object { node = schema.string } in
{
  nodes = [
    { id = "first", trigger = "halt.go", produces = ["first-done"], handler = "step.nu",
      compensate = "undo.nu" },
    { id = "second", trigger = "halt.go", produces = ["second-done"], handler = "step.nu",
      compensate = "undo.nu" },
    { id = "quick", trigger = "halt.go", consumes = ["first-done", "second-done"],
      produces = ["quick-done"], handler = "step.nu", compensate = "undo.nu" },
    { id = "slow", trigger = "halt.go", consumes = ["first-done", "second-done"],
      produces = ["slow-done"], handler = "slow.nu", compensate = "undo.nu", timeout = 120 },
    { id = "after", trigger = "halt.go", consumes = ["quick-done", "slow-done"],
      produces = ["after-done"], handler = "step.nu" },
  ],
  capabilities = {
    "first-done" = done, "second-done" = done, "quick-done" = done, "slow-done" = done,
    "after-done" = done,
  },
}
"""

STEP = """
def main [] {
    let node = $env.STRATUM_NODE
    {} | insert $"($node)-done" {node: $node} | to json -r
}
"""

# a child shell in the node's process group: cancelling must kill it too, not only nu
SLOW = """
def main [] {
    let pidfile = ($env.STRATUM_WORKSPACE | path join "slow.pid")
    ^sh -c $"echo $$ > ($pidfile); exec sleep 120"
    {"slow-done": {node: "slow"}} | to json -r
}
"""

UNDO = """
def main [] {
    let node = $env.STRATUM_NODE
    let log = ($env.STRATUM_WORKSPACE | path join $"undo-($node).log")
    $"attempt ($env.STRATUM_ATTEMPT)\n" | save --append $log
    {undone: $node} | to json -r
}
"""


def write_workflow(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in {
        "halt.ncl": WORKFLOW,
        "step.nu": STEP,
        "slow.nu": SLOW,
        "undo.nu": UNDO,
    }.items():
        (folder / name).write_text(text)
    return folder


@pytest_asyncio.fixture(loop_scope="session")
async def halting(tmp_path: Path, nats_url: str, openbao: Vault) -> AsyncIterator[Harness]:
    settings = make_settings(
        tmp_path,
        nats_url,
        definitions=str(write_workflow(tmp_path / "defs")),
        vault_addr=openbao.addr,
        vault_token=openbao.token,
    )
    async with running(settings) as harness:
        yield harness


def workspace(stratum: Harness, run: str) -> Path:
    return stratum.server.settings.data_dir / "runs" / run / "workspace"


def undo_log(stratum: Harness, run: str, node: str) -> list[str]:
    path = workspace(stratum, run) / f"undo-{node}.log"
    return path.read_text().splitlines() if path.is_file() else []


def alive(pid: int) -> bool:
    """Whether `pid` still runs (a zombie nobody reaped yet has stopped)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


async def slow_running(stratum: Harness, run: str) -> int:
    """The pid of `slow`'s shell once stage 1 is under way and `quick` has succeeded."""

    async def ready() -> int | None:
        pidfile = workspace(stratum, run) / "slow.pid"
        view = await stratum.store.get_view(run) or {}
        quick = view.get("nodes", {}).get("quick", {})
        text = pidfile.read_text().strip() if pidfile.is_file() else ""
        return int(text) if text and quick.get("status") == "succeeded" else None

    pid: int = await eventually(ready, timeout=60)
    return pid


def api(stratum: Harness) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=stratum.server.http_url, timeout=10)


async def events_of(stratum: Harness, run: str) -> list[Any]:
    return [e for e in await stratum.store.all_events() if e.runid == run]


async def test_a_cancel_during_a_parallel_stage_kills_undoes_in_reverse_and_ends_cancelled(
    halting: Harness,
) -> None:
    run = await halting.emit("halt.go", {})
    pid = await slow_running(halting, run)
    assert alive(pid)

    asked = await cli(halting, "cancel", run, "--reason", "wrong branch", "--json")
    assert asked.returncode == 0, asked.stderr
    answer = json.loads(asked.stdout)
    assert (answer["run_id"], answer["was"]) == (run, "Running")
    assert answer["actor"] == "source:stratum-cli"
    assert answer["policy_ids"] == ["tests-cancel-own-tenant"]

    view = await halting.finished(run, timeout=60)
    assert view["status"] == "Cancelled"
    assert (view["cancelled_by"], view["cancel_reason"]) == ("source:stratum-cli", "wrong branch")
    assert view["error"] == "cancelled by source:stratum-cli: wrong branch"
    assert not alive(pid), "the node's child process outlived the cancel"

    nodes = {name: node["status"] for name, node in view["nodes"].items()}
    assert nodes["slow"] == "cancelled"
    assert {nodes["first"], nodes["second"], nodes["quick"]} == {"succeeded"}
    assert nodes.get("after", "pending") == "pending", "nothing is dispatched after a cancel"
    assert "cancelled: cancelled by source:stratum-cli" in view["nodes"]["slow"]["error"]

    # compensation ran in reverse over what succeeded (stage 1, then stage 0), each once
    assert [(s["node"], s["status"]) for s in view["compensation"]] == [
        ("quick", "succeeded"),
        ("second", "succeeded"),
        ("first", "succeeded"),
    ]
    for node in ("quick", "second", "first"):
        assert undo_log(halting, run, node) == ["attempt 1"], node
    assert undo_log(halting, run, "slow") == [], "a killed node did nothing to undo"

    events = await events_of(halting, run)
    types = [e.type for e in events]
    [stopping] = [e for e in events if e.type == "stratum.run.cancelling"]
    assert stopping.id == derived_event_id(answer["request"], stopping.type, ""), "from the request"
    assert (stopping.data["actor"], stopping.data["reason"]) == (
        "source:stratum-cli",
        "wrong branch",
    )
    # the stage's end and the order to compensate are written together (either order)
    for earlier, later in [
        ("stratum.run.cancelling", "stratum.stage.failed"),
        ("stratum.run.cancelling", "stratum.run.compensate"),
        ("stratum.stage.failed", "stratum.run.cancelled"),
        ("stratum.run.compensate", "stratum.run.cancelled"),
    ]:
        assert types.index(earlier) < types.index(later), (earlier, later, types)
    assert types.count("stratum.run.cancelled") == 1
    assert types.count(CompensationRecorded.TYPE) == 3

    record = await halting.store.get_run(run)
    assert record is not None and record["status"] == "Cancelled" and record["finished_at"]
    [entry] = record["interventions"]
    assert (entry["action"], entry["actor"], entry["decision"]) == (
        "cancel",
        "source:stratum-cli",
        "allow",
    )
    assert entry["policy_ids"] == ["tests-cancel-own-tenant"]

    shown = await cli(halting, "show", run)
    assert shown.returncode == 0, shown.stderr
    assert "Cancelled" in shown.stdout and "wrong branch" in shown.stdout
    listed = await cli(halting, "runs", "--status", "cancelled", "--json")
    assert run in {r["run_id"] for r in json.loads(listed.stdout)}

    async with api(halting) as client:
        metrics = (await client.get("/metrics")).text
    assert 'stratum_interventions_total{action="cancel",outcome="cancelling",tenant="acme"}' in (
        metrics
    )

    # the run has ended: asked again, the CLI says so and exits 3
    again = await cli(halting, "cancel", run)
    assert again.returncode == 3
    assert f"run {run} has already ended: Cancelled" in again.stderr


async def test_a_cancel_refused_by_the_policies_is_kept_and_the_run_goes_on(
    halting: Harness,
) -> None:
    run = await halting.emit("halt.go", {})
    pid = await slow_running(halting, run)
    async with api(halting) as client:
        refused = await client.post(
            f"/api/runs/{run}/cancel",
            json={"reason": "curious"},
            headers={"Stratum-Caller": "intern"},
        )
        assert refused.status_code == 403
        body = refused.json()
        assert body["policy_ids"] == ["tests-interns-may-not-cancel"]
        assert "source:intern may not cancel run" in body["error"]
        assert "interns may not cancel runs" in body["error"]
        metrics = (await client.get("/metrics")).text
    assert 'stratum_interventions_total{action="cancel",outcome="refused",tenant="acme"}' in (
        metrics
    )

    record = await halting.store.get_run(run)
    assert record is not None and record["status"] == "Running"
    [entry] = record["interventions"]
    assert (entry["actor"], entry["decision"], entry["outcome"]) == (
        "source:intern",
        "deny",
        "refused",
    )
    assert alive(pid), "a refused cancel stops nothing"

    # the refusal is in the audit trail; then someone allowed stops the run
    async with api(halting) as client:
        lines = (await client.get("/api/audit", params={"tenant": "acme"})).text.splitlines()
    [audited] = [json.loads(line) for line in lines if run in line]
    [kept] = audited["record"]["interventions"]
    assert (kept["actor"], kept["decision"], kept["policy_ids"], kept["outcome"]) == (
        "source:intern",
        "deny",
        ["tests-interns-may-not-cancel"],
        "refused",
    )
    assert "interns may not cancel runs" in kept["why"]
    stopped = await cli(halting, "cancel", run, "--wait", "--json")
    assert stopped.returncode == 0, stopped.stderr
    assert json.loads(stopped.stdout)["status"] == "Cancelled"
    assert not alive(pid)


async def test_cancelling_an_unknown_run_or_with_a_bad_body_is_a_clear_error(
    halting: Harness,
) -> None:
    missing = await cli(halting, "cancel", "acme-nosuchrun")
    assert missing.returncode == 5
    assert "unknown run acme-nosuchrun" in missing.stderr
    async with api(halting) as client:
        bad = await client.post("/api/runs/acme-x/cancel", content=b"{not json")
    assert bad.status_code == 400 and "reason" in bad.json()["error"]


QUEUED_NAP = """
let { schema, .. } = import "stratum.ncl" in
{
  nodes = [
    { id = "nap", trigger = "nap.start", produces = ["rested"], handler = "nap.nu",
      compensate = "undo.nu", timeout = 60 },
  ],
  capabilities = { rested = schema.object { ms = schema.integer } },
}
"""
NAP_SCRIPT = """def main [] {
  let i = ($in | from json)
  $"($env.STRATUM_RUN_ID)\n" | save --append ($env.STRATUM_WORKSPACE | path join "napped.log")
  sleep ($i.event.ms * 1ms)
  {rested: {ms: $i.event.ms}} | to json -r
}
"""


async def test_a_queued_run_is_cancelled_without_running_anything(
    tmp_path: Path, nats_url: str, openbao: Vault
) -> None:
    definitions = tmp_path / "definitions"
    definitions.mkdir()
    (definitions / "nap.ncl").write_text(QUEUED_NAP)
    (definitions / "nap.nu").write_text(NAP_SCRIPT)
    (definitions / "undo.nu").write_text(UNDO)
    settings = make_settings(
        tmp_path,
        nats_url,
        definitions=str(definitions),
        tenant_limits={"acme": {"max_concurrent_runs": 1}},
        vault_addr=openbao.addr,
        vault_token=openbao.token,
    )
    async with running(settings) as stratum:
        first = await stratum.emit("nap.start", {"ms": 3000})

        async def first_running() -> bool:
            run = await stratum.store.get_run(first)
            return bool(run and run["status"] == "Running")

        await eventually(first_running)
        queued = await stratum.emit("nap.start", {"ms": 10})
        behind = await stratum.emit("nap.start", {"ms": 10})

        async def both_queued() -> bool:
            records = [await stratum.store.get_run(r) for r in (queued, behind)]
            return all(r and r.get("queued_at") and r["status"] == "Accepted" for r in records)

        await eventually(both_queued)
        asked = await cli(stratum, "cancel", queued, "--reason", "not needed", "--json")
        assert asked.returncode == 0, asked.stderr
        assert json.loads(asked.stdout)["was"] == "Accepted"

        view = await stratum.finished(queued)
        assert (view["status"], view["cancelled_by"]) == ("Cancelled", "source:stratum-cli")
        assert view["stages"] == [] and view["nodes"] == {} and view["compensation"] == []
        assert not (stratum.server.settings.data_dir / "runs" / queued).exists()
        types = [e.type for e in await events_of(stratum, queued)]
        assert "stratum.run.planned" not in types and "stratum.run.cancelling" not in types

        # the others are unaffected: the running one finishes, the next queued one runs
        assert (await stratum.finished(first))["status"] == "Succeeded"
        assert (await stratum.finished(behind))["status"] == "Succeeded"
        admitted = [e for e in await events_of(stratum, queued) if "admitted" in e.type]
        assert admitted == [], "a cancelled run is never admitted"


@pytest_asyncio.fixture(loop_scope="session")
async def signed_halting(tmp_path: Path, nats_url: str) -> AsyncIterator[Harness]:
    settings = make_settings(
        tmp_path,
        nats_url,
        definitions=str(write_workflow(tmp_path / "defs")),
        require_signatures=True,
    )
    async with running(settings) as harness:
        yield harness


async def test_signed_callers_cancel_what_the_policies_let_them(
    signed_halting: Harness, tmp_path: Path
) -> None:
    """With signatures required the caller is who signed: a publisher may cancel its own
    tenant's runs (another tenant's run is not even found), the operator any run."""
    stratum = signed_halting
    seeds = {
        tenant: await stratum.add_publisher(name, tenant)
        for name, tenant in (
            ("ci", "acme"),
            ("bot", "globex"),
        )
    }
    operator = (tmp_path / "data" / "nkeys" / f"{CORE_IDENTITY}.seed").read_text().strip()

    def caller(seed: str | None) -> httpx.AsyncClient:
        auth = SignedRequest(seed) if seed else None
        return httpx.AsyncClient(base_url=stratum.server.http_url, auth=auth, timeout=10)

    mine = await stratum.emit_signed(seeds["acme"], "halt.go", {})
    await slow_running(stratum, mine)
    async with caller(None) as anonymous:
        unsigned = await anonymous.post(f"/api/runs/{mine}/cancel", json={})
    assert unsigned.status_code == 401
    async with caller(seeds["globex"]) as globex:
        other = await globex.post(f"/api/runs/{mine}/cancel", json={"reason": "not mine"})
    assert (other.status_code, other.json()["error"]) == (404, f"unknown run {mine}")
    async with caller(seeds["acme"]) as acme:
        own = await acme.post(f"/api/runs/{mine}/cancel", json={"reason": "superseded"})
    assert own.status_code == 202, own.text
    assert (own.json()["actor"], own.json()["policy_ids"]) == (
        "publisher:ci",
        ["tests-publishers-cancel-own-tenant"],
    )
    view = await stratum.finished(mine)
    assert (view["status"], view["cancelled_by"]) == ("Cancelled", "publisher:ci")

    theirs = await stratum.emit_signed(seeds["globex"], "halt.go", {}, tenant="globex")
    await slow_running(stratum, theirs)
    async with caller(operator) as admin:
        stopped = await admin.post(f"/api/runs/{theirs}/cancel", json={"reason": "maintenance"})
    assert stopped.status_code == 202, stopped.text
    assert (stopped.json()["actor"], stopped.json()["policy_ids"]) == (
        "operator",
        ["tests-operator-cancels"],
    )
    view = await stratum.finished(theirs)
    assert (view["status"], view["cancel_reason"]) == ("Cancelled", "maintenance")
    record = await stratum.store.get_run(theirs)
    assert record is not None
    assert [(e["actor"], e["decision"]) for e in record["interventions"]] == [("operator", "allow")]
