"""Reruns on the real stack (nats-server, SurrealDB, Nickel, nu, Cedar): `stratum rerun`
starts a new run of a run's trigger event — a new run id, the same data — whose
trigger the policies decide again, as for the principal that sent it; both runs name each
other in their records, `stratum show` and the audit trail. A rerun of a run whose
publisher has since been revoked is Denied, and nothing of it runs.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from stratum.clock import iso, utc_now
from stratum_host.cli.signed import SignedRequest
from tests.conftest import ROOT, make_settings
from tests.e2e.conftest import Harness, cli, running

pytestmark = pytest.mark.asyncio(loop_scope="session")

WORKFLOW = """
let { schema, .. } = import "stratum.ncl" in
{
  nodes = [
    { id = "echo", trigger = "echo.go", produces = ["echoed"], handler = "echo.nu" },
  ],
  capabilities = { echoed = schema.object { said = schema.string } },
}
"""
ECHO = """
def main [] {
    let input = ($in | from json)
    let log = ($env.STRATUM_WORKSPACE | path join "ran.log")
    $"($env.STRATUM_RUN_ID)\\n" | save --append $log
    {echoed: {said: $input.event.say}} | to json -r
}
"""


def write_workflow(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "echo.ncl").write_text(WORKFLOW)
    (folder / "echo.nu").write_text(ECHO)
    return folder


@pytest_asyncio.fixture(loop_scope="session")
async def echoing(tmp_path: Path, nats_url: str) -> AsyncIterator[Harness]:
    settings = make_settings(tmp_path, nats_url, definitions=str(write_workflow(tmp_path / "d")))
    async with running(settings) as harness:
        yield harness


async def test_a_rerun_runs_the_same_event_again_as_a_new_run_linked_both_ways(
    echoing: Harness, tmp_path: Path
) -> None:
    original = await echoing.emit("echo.go", {"say": "hello"})
    first = await echoing.finished(original)
    assert first["status"] == "Succeeded"

    asked = await cli(echoing, "rerun", original, "--reason", "flaky runner", "--wait", "--json")
    assert asked.returncode == 0, asked.stderr
    view = json.loads(asked.stdout)
    new = view["run_id"]
    assert new != original and view["status"] == "Succeeded"
    assert view["rerun_of"] == original
    assert view["inputs_hash"] == first["inputs_hash"]
    assert view["event_id"].startswith("rerun:req-"), "recorded under the request"
    assert view["outputs"]["echo"]["echoed"]["value"] == {"said": "hello"}, "the same data"
    ran = echoing.server.settings.data_dir / "runs" / new / "workspace" / "ran.log"
    assert ran.read_text().splitlines() == [new]

    linked = await echoing.store.get_view(original)
    assert linked is not None
    [again] = linked["reruns"]
    assert (again["run"], again["status"], again["actor"]) == (
        new,
        "Accepted",
        "source:stratum-cli",
    )
    assert linked["status"] == "Succeeded", "the original is left as it was"
    record = await echoing.store.get_run(original)
    assert record is not None
    [entry] = record["interventions"]
    assert (entry["action"], entry["reason"], entry["outcome"]) == (
        "rerun",
        "flaky runner",
        f"rerun as {new} (Accepted)",
    )
    assert entry["policy_ids"] == ["tests-rerun-own-tenant"]
    rerun_record = await echoing.store.get_run(new)
    assert rerun_record is not None
    assert rerun_record["rerun_of"] == original
    assert rerun_record["policy_ids"] == ["tests-trigger-own-tenant"], "its trigger, again"

    shown = await cli(echoing, "show", original)
    assert f"rerun as {new} (Accepted) by source:stratum-cli" in shown.stdout
    shown = await cli(echoing, "show", new)
    assert f"rerun of {original}" in shown.stdout

    out = tmp_path / "audit.ndjson"
    exported = await cli(echoing, "audit", "export", "--ndjson", "--out", str(out))
    assert exported.returncode == 0, exported.stderr
    records = {
        line["record"]["run_id"]: line["record"]
        for line in map(json.loads, out.read_text().splitlines())
    }
    assert records[original]["reruns"] == [new] and records[new]["rerun_of"] == original

    # a rerun of the rerun is a third run; a run that does not exist is a clear error
    third = await cli(echoing, "rerun", new, "--json")
    assert third.returncode == 0, third.stderr
    assert json.loads(third.stdout)["rerun_of"] == new
    # a client that retries with its idempotency key makes one rerun, answered again
    async with httpx.AsyncClient(base_url=echoing.server.http_url, timeout=10) as client:
        first_try, retried = [
            await client.post(f"/api/runs/{original}/rerun", json={"request": "deploy-42"})
            for _ in range(2)
        ]
    assert (first_try.status_code, retried.status_code) == (201, 200)
    assert first_try.json() == retried.json()
    stored = await echoing.store.get_run(original)
    assert stored is not None
    assert [r["run"] for r in stored["reruns"]].count(first_try.json()["run_id"]) == 1
    missing = await cli(echoing, "rerun", "acme-nosuchrun")
    assert (missing.returncode, missing.stderr) == (5, "error: unknown run acme-nosuchrun\n")


@pytest_asyncio.fixture(loop_scope="session")
async def signed_echoing(tmp_path: Path, nats_url: str) -> AsyncIterator[Harness]:
    settings = make_settings(
        tmp_path,
        nats_url,
        definitions=str(write_workflow(tmp_path / "d")),
        require_signatures=True,
    )
    async with running(settings) as harness:
        yield harness


async def test_a_rerun_is_authorized_again_and_denied_once_its_publisher_is_revoked(
    signed_echoing: Harness,
) -> None:
    stratum = signed_echoing
    seed = await stratum.add_publisher("ci", "acme")
    original = await stratum.emit_signed(seed, "echo.go", {"say": "x"})
    assert (await stratum.finished(original))["status"] == "Succeeded"

    # the operator (the CLI signs with its key) asks; the trigger is the publisher's again
    allowed = await cli(stratum, "rerun", original, "--wait", "--json")
    assert allowed.returncode == 0, allowed.stderr
    accepted = json.loads(allowed.stdout)
    assert (accepted["status"], accepted["actor"]) == ("Succeeded", "publisher:ci")

    await stratum.store.revoke_publisher("ci", iso(utc_now()))
    denied = await cli(stratum, "rerun", original, "--json")
    assert denied.returncode == 4
    answer = json.loads(denied.stdout)
    assert answer["status"] == "Denied" and "publisher ci was revoked" in answer["reason"]
    assert "was denied: publisher ci was revoked" in denied.stderr
    view = await stratum.finished(answer["run_id"])
    assert (view["status"], view["rerun_of"]) == ("Denied", original)
    assert view["stages"] == [] and view["nodes"] == {}, "nothing of it ran"
    linked = await stratum.store.get_view(original)
    assert linked is not None
    assert [(r["status"], r["actor"]) for r in linked["reruns"]] == [
        ("Accepted", "operator"),
        ("Denied", "operator"),
    ]


@pytest_asyncio.fixture(loop_scope="session")
async def shipped_policies(tmp_path: Path, nats_url: str) -> AsyncIterator[Harness]:
    settings = make_settings(
        tmp_path, nats_url, require_signatures=True, policies=str(ROOT / "deploy" / "policies")
    )
    async with running(settings) as harness:
        yield harness


async def test_a_publisher_reruns_only_what_it_may_trigger_itself(
    shipped_policies: Harness,
) -> None:
    """With the shipped policies only releasers start releases: a publisher of the tenant
    that is not one may not rerun a releaser's release (its trigger would be decided as
    the releaser's), while the releaser may."""
    stratum = shipped_policies
    seeds = {name: await stratum.add_publisher(name, "acme") for name in ("release-bot", "ci")}
    data = {"version": "0.0.1", "target": ".stratum/never", "fail_at": "prepare"}
    release = await stratum.emit_signed(seeds["release-bot"], "release.request", data)
    assert (await stratum.finished(release))["actor"] == "publisher:release-bot"

    def caller(seed: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=stratum.server.http_url, auth=SignedRequest(seed), timeout=10
        )

    async with caller(seeds["ci"]) as ci:
        refused = await ci.post(f"/api/runs/{release}/rerun", json={"reason": "sneaky"})
    assert refused.status_code == 403
    error = refused.json()["error"]
    assert error.startswith(f"publisher:ci may not rerun run {release}: it may not trigger")
    assert "may only be triggered by a releaser" in error
    assert refused.json()["policy_ids"] == ["releases-need-a-releaser"]
    async with caller(seeds["release-bot"]) as bot:
        again = await bot.post(f"/api/runs/{release}/rerun", json={})
    assert again.status_code == 201, again.text
    assert again.json()["status"] == "Accepted"
    record = await stratum.store.get_run(release)
    assert record is not None
    assert [(i["actor"], i["decision"]) for i in record["interventions"]] == [
        ("publisher:ci", "deny"),
        ("publisher:release-bot", "allow"),
    ]
