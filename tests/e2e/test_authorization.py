"""The workflow plane end to end, with the shipped Cedar policies (a copy, to change): a
trigger the policies refuse becomes a Denied run naming the policies that decided, its
`stratum.run.denied` audit event is on the bus, and nothing runs; a permitted one runs.
A policy change is picked up while running; an invalid one keeps the previous policies
and says where it is wrong (`/healthz`, the log, `stratum check`).

The workflow (written per test) has one trivial node per topic, so a run that is allowed
finishes in a moment and one that ran leaves its mark in its workspace.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import pytest_asyncio

from stratum.config import Settings
from stratum.errors import PolicyError
from stratum.events import Envelope, RunDenied
from stratum.ids import run_id
from stratum_host.server import StratumServer
from tests.conftest import ROOT, eventually, listening, make_settings
from tests.e2e.conftest import Harness, running
from tests.events import publisher_event

WORKFLOW = """{
  nodes = [
    { id = "release", trigger = "release.request", handler = "mark.nu" },
    { id = "hello", trigger = "hello.go", handler = "mark.nu" },
  ],
}
"""
MARK = """
def main [] {
    "" | save -f ($env.STRATUM_WORKSPACE | path join "ran")
    {} | to json -r
}
"""
RELEASERS = "releases-need-a-releaser"
# a permit for unsigned events in globex, first with a typo in its principal's type
OPEN_GLOBEX = """// unsigned events may trigger in globex too
@id("dev-unsigned-in-globex")
permit (
  principal is Stratum::Source,
  action == Stratum::Action::"trigger",
  resource in Stratum::Tenant::"globex"
);
"""
TYPO = OPEN_GLOBEX.replace("Stratum::Source", "Stratum::Sourse")


@pytest.fixture()
def settings(tmp_path: Path, nats_url: str) -> Settings:
    definitions = tmp_path / "defs"
    definitions.mkdir()
    (definitions / "authz.ncl").write_text(WORKFLOW)
    (definitions / "mark.nu").write_text(MARK)
    policies = shutil.copytree(ROOT / "deploy" / "policies", tmp_path / "policies")
    return make_settings(
        tmp_path, nats_url, definitions=str(definitions), policies=str(policies), watch=True
    )


@pytest_asyncio.fixture(loop_scope="session")
async def harness(settings: Settings) -> AsyncIterator[Harness]:
    async with running(settings) as started:
        yield started


class AuditLog(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture()
def authz_log() -> Iterator[AuditLog]:
    with listening("stratum.authz", AuditLog()) as handler:
        yield handler


async def publish(
    harness: Harness,
    topic: str,
    *,
    source: str,
    tenant: str = "acme",
    ident: str = "",
    msg_id: bool = True,
) -> str:
    """An unsigned CloudEvent from `source`; the run id it makes. Without `msg_id`, a copy
    is not dropped by the bus (as after its duplicate window)."""
    ident = ident or str(uuid.uuid4())
    body = publisher_event(topic, {"version": "1.0.0"}, ident=ident, source=source)
    await harness.nc.jetstream().publish(
        harness.subjects.event(tenant, topic),
        orjson.dumps(body),
        headers={"Nats-Msg-Id": ident} if msg_id else None,
    )
    return run_id(tenant, ident)


async def audit_events(harness: Harness) -> tuple[list[Envelope], Any]:
    """Every `run.denied` event the bus carries from now on (and the subscription)."""
    seen: list[Envelope] = []

    async def collect(message: Any) -> None:
        seen.append(Envelope.from_bytes(message.data))

    subject = harness.subjects.internal(RunDenied.TYPE)
    return seen, await harness.nc.subscribe(subject, cb=collect)


def ran(harness: Harness, run: str) -> bool:
    return (harness.server.settings.data_dir / "runs" / run).exists()


async def health(harness: Harness) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=harness.server.http_url, timeout=5) as client:
        body: dict[str, Any] = (await client.get("/healthz")).json()
    return body


async def assert_denied(
    harness: Harness, run: str, *, actor: str, policy_ids: list[str], reason: str
) -> dict[str, Any]:
    view = await harness.finished(run)
    assert (view["status"], view["actor"], view["policy_ids"]) == ("Denied", actor, policy_ids)
    assert view["error"] == reason
    record = await harness.store.get_run(run)
    assert record is not None
    assert (record["status"], record["decision"], record["policy_ids"], record["reason"]) == (
        "Denied",
        "deny",
        policy_ids,
        reason,
    )
    assert record["finished_at"] and record["actor"] == actor
    # nothing ran: no plan, no node, no workspace; the audit event is the run's only event
    assert record.get("plan") is None and await harness.store.node_executions(run) == {}
    assert await harness.store.count_run_events(run) == 1
    assert not ran(harness, run)
    return view


async def test_a_refused_trigger_is_a_denied_run_with_its_audit_event_and_nothing_runs(
    harness: Harness,
) -> None:
    seen, subscription = await audit_events(harness)
    try:
        # not a releaser
        refused = await publish(harness, "release.request", source="laptop")
        await assert_denied(
            harness,
            refused,
            actor="source:laptop",
            policy_ids=[RELEASERS],
            reason="release.request may only be triggered by a releaser "
            "(role `releaser` or group acme/releasers)",
        )
        # from a pull request (the context decides), and no releaser either: both forbids
        from_pr = await publish(harness, "release.request", source="github.com/acme/app/pull/7")
        await assert_denied(
            harness,
            from_pr,
            actor="source:github.com/acme/app/pull/7",
            policy_ids=["no-releases-from-pull-requests", RELEASERS],
            reason="a release is never started by an event from a pull request; "
            "release.request may only be triggered by a releaser "
            "(role `releaser` or group acme/releasers)",
        )
        # unsigned events outside the development tenant: nothing permits them
        elsewhere = await publish(harness, "hello.go", source="stratum-cli", tenant="globex")
        await assert_denied(
            harness,
            elsewhere,
            actor="source:stratum-cli",
            policy_ids=[],
            reason="no policy permits source:stratum-cli to trigger hello.go in tenant globex",
        )

        # a releaser (entities.json puts the CLI in acme/releasers): the release runs
        allowed = await publish(harness, "release.request", source="stratum-cli")
        view = await harness.finished(allowed)
        assert view["status"] == "Succeeded" and view["policy_ids"] == []
        assert view["nodes"]["release"]["status"] == "succeeded" and ran(harness, allowed)
        record = await harness.store.get_run(allowed) or {}
        assert (record["decision"], record["policy_ids"]) == ("allow", ["dev-unsigned-in-acme"])

        async def all_audited() -> list[Envelope] | None:
            return seen if len(seen) >= 3 else None

        await eventually(all_audited, timeout=10)
    finally:
        await subscription.unsubscribe()

    by_run = {event.runid: event.payload(RunDenied) for event in seen}
    assert set(by_run) == {refused, from_pr, elsewhere}  # the allowed run is not in the audit
    audit = by_run[refused]
    assert (audit.actor, audit.topic, audit.event_source) == (
        "source:laptop",
        "release.request",
        "laptop",
    )
    assert audit.policy_ids == [RELEASERS]
    assert audit.trigger_subject == harness.subjects.event("acme", "release.request")
    assert by_run[elsewhere].policy_ids == []


async def test_a_denied_event_published_again_is_still_one_denied_run(harness: Harness) -> None:
    ident = str(uuid.uuid4())
    first = await publish(harness, "release.request", source="laptop", ident=ident)
    await harness.finished(first)
    (stored,) = await harness.store.events_caused_by(first)
    seen, subscription = await audit_events(harness)
    try:
        # a copy the bus does not drop: ingest finds the run and announces the same event
        again = await publish(
            harness, "release.request", source="laptop", ident=ident, msg_id=False
        )
        assert again == first

        async def announced() -> list[Envelope] | None:
            return seen or None

        (repeated,) = await eventually(announced, timeout=10)
    finally:
        await subscription.unsubscribe()
    assert repeated.id == stored.id and repeated.data == stored.data
    assert await harness.store.count_run_events(first) == 1
    assert (await harness.store.get_run(first) or {})["status"] == "Denied"


async def test_an_invalid_policy_change_keeps_the_previous_policies_and_says_where(
    harness: Harness, settings: Settings, authz_log: AuditLog
) -> None:
    before = await health(harness)
    assert before["policies_error"] is None and before["policies_version"]
    broken = settings.policies / "globex.cedar"
    broken.write_text(TYPO)

    async def reported() -> dict[str, Any] | None:
        body = await health(harness)
        return body if body["policies_error"] else None

    body = await eventually(reported, timeout=15)
    first_line = body["policies_error"].splitlines()[0]
    assert first_line.startswith(f"{broken}:2:1: policy 'dev-unsigned-in-globex': ")
    assert first_line.endswith("unrecognized entity type `Stratum::Sourse`")
    assert body["policies_version"] == before["policies_version"]
    assert "policy reload failed; keeping the previous policies" in authz_log.messages

    # the previous policies still decide: globex stays closed, acme still runs
    closed = await publish(harness, "hello.go", source="tests", tenant="globex")
    assert (await harness.finished(closed))["status"] == "Denied"
    still = await publish(harness, "hello.go", source="tests")
    assert (await harness.finished(still))["status"] == "Succeeded"

    # fixed: the new policy is in force for the next trigger
    broken.write_text(OPEN_GLOBEX)

    async def reloaded() -> dict[str, Any] | None:
        body = await health(harness)
        changed = body["policies_version"] != before["policies_version"]
        return body if changed and body["policies_error"] is None else None

    await eventually(reloaded, timeout=15)
    opened = await publish(harness, "hello.go", source="tests", tenant="globex")
    assert (await harness.finished(opened))["status"] == "Succeeded"


async def test_up_refuses_to_start_with_invalid_policies(settings: Settings) -> None:
    (settings.policies / "tenancy.cedar").write_text("forbid (principal, action, resource")
    server = StratumServer(settings)
    try:
        with pytest.raises(PolicyError, match=r"tenancy\.cedar:1:1: Cedar syntax: "):
            await server.start(http=False)
    finally:
        await server.stop()


def test_check_prints_the_located_policy_error(settings: Settings) -> None:
    stratum = str(Path(sys.executable).parent / "stratum")
    env = {**os.environ, "STRATUM_POLICIES": str(settings.policies), "STRATUM_WATCH": "false"}
    clean = subprocess.run([stratum, "check"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert clean.returncode == 0, clean.stderr
    assert str(settings.policies) in clean.stdout

    (settings.policies / "globex.cedar").write_text(TYPO)
    result = subprocess.run(
        [stratum, "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    located = f"{settings.policies / 'globex.cedar'}:2:1: policy 'dev-unsigned-in-globex': "
    assert f"{located}unrecognized entity type `Stratum::Sourse`" in result.stderr
    assert result.stderr.strip().endswith(f"error: 2 problem(s) in {settings.policies}")
    assert "Traceback" not in result.stderr
