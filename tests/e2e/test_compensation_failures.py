"""Compensations that fail: once, always, or because the process died during one. Every run
still ends in a terminal status — Compensated, or CompensationFailed naming the failed
steps — with each step recorded once.

The workflow (written per test): stage 0 runs `first` and `second`, stage 1 runs `last`,
which always fails, so the saga undoes `second` then `first`. Every undo appends a line to
`<workspace>/undo-<node>.log`; the event's `mode` says how `first`'s undo misbehaves.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest
import pytest_asyncio
from nats.js.api import ConsumerConfig

from stratum.bus.subjects import Subjects
from stratum.config import Settings
from stratum.events import CompensationRecorded
from stratum_host.server import StratumServer
from tests.conftest import eventually, make_settings
from tests.e2e.conftest import Harness

WORKFLOW = """
let { schema, .. } = import "stratum.ncl" in
{
  nodes = [
    { id = "first", trigger = "saga.go", produces = ["first-done"], handler = "step.nu",
      compensate = "undo.nu", retries = { max = 2, backoff = 0.2, factor = 1 } },
    { id = "second", trigger = "saga.go", produces = ["second-done"], handler = "step.nu",
      compensate = "undo.nu" },
    { id = "last", trigger = "saga.go", consumes = ["first-done", "second-done"],
      handler = "fail.nu" },
  ],
  capabilities = {
    "first-done" = schema.object { node = schema.string },
    "second-done" = schema.object { node = schema.string },
  },
}
"""

STEP = """
def main [] {
    let node = $env.STRATUM_NODE
    {} | insert $"($node)-done" {node: $node} | to json -r
}
"""

FAIL = """
def main [] {
    print -e "last: failing on purpose"
    exit 1
}
"""

UNDO = """
def main [] {
    let input = ($in | from json)
    let node = $env.STRATUM_NODE
    let mode = ($input.event | get -o mode | default "")
    let log = ($env.STRATUM_WORKSPACE | path join $"undo-($node).log")
    $"attempt ($env.STRATUM_ATTEMPT)\n" | save --append $log
    let runs = (open --raw $log | lines | length)
    if $node == "first" {
        if $mode == "flaky" and $runs == 1 {
            print -e "first undo: failing once"
            exit 1
        }
        if $mode == "broken" {
            print -e "first undo: cannot undo"
            exit 3
        }
        if $mode == "slow" and $runs == 1 { sleep 20sec }
    }
    if $node == "second" and ($input.event | get -o second | default "") == "broken" {
        print -e "second undo: cannot undo"
        exit 3
    }
    {undone: $node} | to json -r
}
"""


def write_workflow(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in {
        "saga.ncl": WORKFLOW,
        "step.nu": STEP,
        "fail.nu": FAIL,
        "undo.nu": UNDO,
    }.items():
        (folder / name).write_text(text)
    return folder


async def start(settings: Settings) -> tuple[StratumServer, Harness]:
    server = StratumServer(settings)
    await server.start(http=False)
    return server, Harness(server, await nats.connect(settings.nats_url))


async def stop(harness: Harness) -> None:
    await harness.nc.close()
    await harness.server.stop()


@pytest.fixture()
def settings(tmp_path: Path, nats_url: str) -> Settings:
    return make_settings(tmp_path, nats_url, definitions=str(write_workflow(tmp_path / "defs")))


@pytest_asyncio.fixture(loop_scope="session")
async def saga(settings: Settings) -> AsyncIterator[Harness]:
    _, harness = await start(settings)
    try:
        yield harness
    finally:
        await stop(harness)


def undo_log(settings: Settings, run: str, node: str) -> list[str]:
    path = settings.data_dir / "runs" / run / "workspace" / f"undo-{node}.log"
    return path.read_text().splitlines() if path.is_file() else []


def bundles(settings: Settings, run: str, node: str) -> list[str]:
    folder = settings.data_dir / "runs" / run / "compensate" / node
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


async def recorded_steps(harness: Harness, run: str) -> list[str]:
    events = await harness.store.all_events()
    return sorted(
        e.data["node"] for e in events if e.runid == run and e.type == CompensationRecorded.TYPE
    )


async def test_an_undo_that_fails_once_is_retried_and_the_run_ends_compensated(
    saga: Harness, settings: Settings
) -> None:
    run = await saga.emit("saga.go", {"mode": "flaky"})
    view = await saga.finished(run, timeout=30)

    assert view["status"] == "Compensated"
    assert [(s["node"], s["status"]) for s in view["compensation"]] == [
        ("second", "succeeded"),
        ("first", "succeeded"),
    ]
    steps = await saga.store.compensations(run)
    assert steps["first"]["attempts"] == 2 and steps["second"]["attempts"] == 1
    assert undo_log(settings, run, "first") == ["attempt 1", "attempt 2"]
    assert bundles(settings, run, "first") == ["1", "2"]
    record = await saga.store.get_run(run)
    assert record is not None
    assert (record["status"], record["failed_compensations"]) == ("Compensated", [])


async def test_an_undo_that_always_fails_ends_the_run_compensation_failed_naming_it(
    saga: Harness, settings: Settings
) -> None:
    run = await saga.emit("saga.go", {"mode": "broken"})
    view = await saga.finished(run, timeout=30)

    assert view["status"] == "CompensationFailed"
    by_node = {s["node"]: s for s in view["compensation"]}
    assert by_node["second"]["status"] == "succeeded", "the other steps still run"
    assert by_node["first"]["status"] == "failed"
    assert "exit code 3" in by_node["first"]["error"]
    assert "after 3 attempts" in by_node["first"]["error"]
    assert undo_log(settings, run, "first") == ["attempt 1", "attempt 2", "attempt 3"]
    record = await saga.store.get_run(run)
    assert record is not None
    assert (record["status"], record["failed_compensations"]) == ("CompensationFailed", ["first"])
    final = [e for e in await saga.store.all_events() if e.type == "stratum.run.compensated"]
    assert [e.data["failed"] for e in final] == [["first"]]


@pytest.mark.parametrize("second", ["ok", "broken"])
async def test_a_saga_cut_short_by_a_dead_instance_resumes_and_records_each_step_once(
    settings: Settings, second: str
) -> None:
    """`first`'s undo sleeps on its first run; while it does, the compensator dies without
    acknowledging (its handler is cut off, as by a crash) and the whole instance stops. A
    new instance on the same data and prefix gets the message again and finishes the saga:
    `second`, recorded before the crash (succeeded, or failed: a recorded step is final),
    is not undone again; `first` runs again."""
    server, harness = await start(settings)
    try:
        run = await harness.emit("saga.go", {"mode": "slow", "second": second})

        async def first_undo_running() -> bool:
            return bool(undo_log(settings, run, "first"))

        await eventually(first_undo_running, timeout=30)
        steps = await harness.store.compensations(run)
        assert (steps["second"]["status"], steps["first"]["status"]) == (
            "succeeded" if second == "ok" else "failed",
            "running",
        )
        compensator = next(r for r in server.runners if r.function.name == "compensator")
        await compensator.stop(drain_seconds=0)  # cancelled mid-script: no ack, no nak
    finally:
        await stop(harness)
    durable = f"{settings.subject_prefix.replace('.', '-')}-compensator"
    await redeliver_soon(settings, durable)

    _, harness = await start(settings)
    try:
        view = await harness.finished(run, timeout=30)
        second_status = "succeeded" if second == "ok" else "failed"
        assert view["status"] == ("Compensated" if second == "ok" else "CompensationFailed")
        assert [(s["node"], s["status"]) for s in view["compensation"]] == [
            ("second", second_status),
            ("first", "succeeded"),
        ]
        assert await recorded_steps(harness, run) == ["first", "second"]
        assert undo_log(settings, run, "second") == ["attempt 1"], "never undone twice"
        # the cut-off attempt keeps its bundle; the rerun has a block of attempts of its own
        # (`first` may make 3 attempts per execution: 1-3, then 4-6)
        assert undo_log(settings, run, "first") == ["attempt 1", "attempt 4"]
        assert bundles(settings, run, "first") == ["1", "4"]
        steps = await harness.store.compensations(run)
        assert (steps["first"]["executions"], steps["first"]["attempts"]) == (2, 1)
        assert steps["second"]["executions"] == 1
        record = await harness.store.get_run(run)
        assert record is not None
        assert record["failed_compensations"] == ([] if second == "ok" else ["second"])
        info = await harness.nc.jetstream().consumer_info(harness.subjects.runs_stream, durable)
        # one command, delivered twice: the saga resumed on JetStream's redelivery
        assert (info.num_pending, info.delivered.consumer_seq) == (0, 2)
    finally:
        await stop(harness)


async def redeliver_soon(settings: Settings, durable: str) -> None:
    """JetStream redelivers an unacknowledged message after the consumer's ack wait
    (`Function.ack_wait`, seconds); shorten it so the test need not sit that out. The next
    instance sets it back when it declares the consumer."""
    nc = await nats.connect(settings.nats_url)
    try:
        js = nc.jetstream()
        stream = Subjects(settings.subject_prefix).runs_stream
        info = await js.consumer_info(stream, durable)
        assert info.num_ack_pending == 1, "the command was left unacknowledged"
        config: ConsumerConfig = info.config
        config.ack_wait = 0.5
        await js.add_consumer(stream, config)
        # past the shortened wait, the server has put the message back for the next pull
        await asyncio.sleep(1.0)
    finally:
        await nc.close()
