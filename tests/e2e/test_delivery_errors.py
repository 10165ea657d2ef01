"""Errors decide delivery, against the whole running Stratum: a permanent error is a dead
letter after one delivery and ends its run Failed with the reason (which nothing drives
again); a retryable one is delivered again after growing delays and the run goes on once
its cause is gone."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest_asyncio
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from stratum.bus.subjects import Subjects
from stratum.events import Envelope, ExecuteStage, RunAccepted
from stratum.runtime.delivery import backoff
from stratum.store import RunStore
from tests.conftest import Vault, eventually, make_settings
from tests.e2e.conftest import Harness, running
from tests.e2e.test_dead_letters import listed
from tests.e2e.test_redelivery import redeliver
from tests.e2e.test_watchdog import accepted_but_never_announced
from tests.events import stage_command

SAMPLE = "nickel/examples/sample-crate"


async def planned_with_a_lost_graph(store: RunStore, subjects: Subjects) -> tuple[str, Envelope]:
    """A run accepted and planned, pinned to a graph version the database does not hold
    (restored from an older backup, say), and the command to run its first stage: the
    stage executor can never run it (DefinitionError, not retryable)."""
    run = await accepted_but_never_announced(store, subjects)
    await store.record_plan(
        run,
        graph_version="v-lost",
        stages=[["fmt-crate"]],
        stage_links=[],
        events=[],
        cause=f"plan-{run}",
    )
    return run, stage_command(run, ["fmt-crate"])


async def test_a_permanent_error_is_a_dead_letter_at_once_and_ends_its_run_failed(
    stratum: Harness,
) -> None:
    run, command = await planned_with_a_lost_graph(stratum.store, stratum.subjects)
    js = stratum.nc.jetstream()
    await js.publish(
        stratum.subjects.internal(ExecuteStage.TYPE),
        command.to_bytes(),
        headers={"Nats-Msg-Id": command.id, "Stratum-Run-Id": run, "Stratum-Tenant": "acme"},
    )

    async def executor_letter() -> dict[str, Any] | None:
        letters = await listed(stratum)
        return next((x for x in letters if x["function"] == "stage-executor"), None)

    letter = await eventually(executor_letter)
    assert letter["deliveries"] == 1, "given up on at its first delivery, not after max_deliver"
    assert (letter["permanent"], letter["invalid"]) == (True, False)
    assert letter["error"] == "DefinitionError: graph version v-lost is not stored"
    durable = f"{stratum.subjects.prefix}-stage-executor"
    info = await js.consumer_info(stratum.subjects.runs_stream, durable)
    assert info.num_redelivered == 0 and info.num_ack_pending == 0

    # the run ended Failed, its reason naming who gave up, on what, and the dead letter
    record = await stratum.store.get_run(run)
    assert record is not None and record["status"] == "Failed" and record["finished_at"]
    reason = record["error"]
    subject = stratum.subjects.internal(ExecuteStage.TYPE)
    assert reason.startswith(f"stage-executor gave up on {subject} message {command.id} ")
    assert letter["id"] in reason and reason.endswith(letter["error"])
    # stored with its event (caused by the message given up on) before it was published
    caused = [event.type for event in await stratum.store.events_caused_by(command.id)]
    assert "stratum.run.failed" in caused

    # its run.accepted arriving late (as the watchdog would drive it) does not revive it
    await redeliver(stratum, RunAccepted.TYPE)
    view = await stratum.finished(run)
    assert (view["status"], view["error"]) == ("Failed", reason)
    record = await stratum.store.get_run(run)
    assert record is not None and record["status"] == "Failed"
    # and the watchdog, were the run quiet for ever so long, leaves it alone
    watchdog = stratum.server.watchdog
    assert watchdog is not None
    watchdog.stuck_after = 0.0
    assert run not in await watchdog.sweep()


@pytest_asyncio.fixture(loop_scope="session")
async def flaky_nu(
    tmp_path: Path, nats_url: str, openbao: Vault, spans: InMemorySpanExporter
) -> AsyncIterator[tuple[Harness, Path, Path]]:
    """A Stratum whose `nu` is a link the test can take away (a dependency gone missing)
    and put back: (Stratum, the link, the real nu)."""
    settings = make_settings(tmp_path, nats_url, vault_addr=openbao.addr, vault_token=openbao.token)
    real = settings.resolve_nu()
    link = tmp_path / "bin" / "nu"
    link.parent.mkdir()
    link.symlink_to(real)
    flaky = make_settings(
        tmp_path, nats_url, vault_addr=openbao.addr, vault_token=openbao.token, nu_bin=str(link)
    )
    async with running(flaky, http=False) as harness:
        yield harness, link, real


def stage_deliveries(spans: InMemorySpanExporter, command: str) -> list[ReadableSpan]:
    """The stage executor's spans of handling `command`, in delivery order."""
    handled = [
        s
        for s in spans.get_finished_spans()
        if s.kind == SpanKind.CONSUMER
        and (s.attributes or {}).get("stratum.function") == "stage-executor"
        and (s.attributes or {}).get("messaging.message.id") == command
    ]
    return sorted(handled, key=lambda s: int((s.attributes or {})["stratum.delivery"]))


async def test_a_retryable_error_is_delivered_again_after_growing_delays_until_it_passes(
    flaky_nu: tuple[Harness, Path, Path], spans: InMemorySpanExporter
) -> None:
    stratum, link, real = flaky_nu
    link.unlink()  # nu cannot be started: DependencyUnavailableError, retryable
    run = await stratum.emit("crate.push", {"source": SAMPLE})

    async def first_stage() -> str | None:
        found = await stratum.store.last_event_of(run, [ExecuteStage.TYPE])
        return found[0].id if found else None

    command = await eventually(first_stage)

    async def failed_three_times() -> bool:
        return len(stage_deliveries(spans, command)) >= 3

    await eventually(failed_three_times, timeout=60)
    link.symlink_to(real)  # the dependency is back

    view = await stratum.finished(run, timeout=90)
    assert view["status"] == "Succeeded", view.get("error")
    handled = stage_deliveries(spans, command)
    deliveries = [int((s.attributes or {})["stratum.delivery"]) for s in handled]
    assert deliveries == list(range(1, len(handled) + 1)) and len(handled) >= 4
    failed, passed = handled[:-1], handled[-1]
    assert all(s.status.status_code == StatusCode.ERROR for s in failed)
    assert passed.status.status_code != StatusCode.ERROR
    # each delivery again came no sooner than the backoff after the failure before it
    for number, (before, after) in enumerate(itertools.pairwise(handled), 1):
        assert before.end_time is not None and after.start_time is not None
        waited = (after.start_time - before.end_time) / 1e9
        assert waited >= backoff(number) - 0.1, (number, waited)
    assert not await stratum.store.dead_letters()
