"""A message handled before and delivered again (a lost ack, a publish that failed after
the commit) is acknowledged without doing its work twice."""

from __future__ import annotations

import asyncio
from pathlib import Path

from stratum.events import ExecuteStage, RunAccepted
from tests.conftest import eventually
from tests.e2e.conftest import Harness


async def redeliver(stratum: Harness, event_type: str, **match: object) -> None:
    """Publish a stored event again, as a redelivery would hand it to its consumer."""
    for event in await stratum.store.all_events():
        if event.type == event_type and all(event.data.get(k) == v for k, v in match.items()):
            await stratum.nc.jetstream().publish(
                stratum.subjects.internal(event.type),
                event.to_bytes(),
                headers={"Nats-Msg-Id": f"{event.id}-again", "Stratum-Run-Id": event.runid},
            )
            return
    raise AssertionError(f"no stored {event_type} {match}")


async def settled(stratum: Harness, function: str) -> bool:
    info = await stratum.nc.jetstream().consumer_info(
        stratum.subjects.runs_stream, f"{stratum.subjects.prefix}-{function}"
    )
    return bool(info.num_ack_pending == 0 and info.num_pending == 0)


async def test_redelivered_messages_are_acked_without_doing_their_work_again(
    stratum: Harness, tmp_path: Path
) -> None:
    run = await stratum.emit(
        "release.request", {"version": "5.0.0", "target": str(tmp_path / "t"), "fail_at": "publish"}
    )
    before = await stratum.finished(run)
    assert before["status"] == "Compensated"
    bundles = sorted(
        p for p in (stratum.server.settings.data_dir / "runs" / run).rglob("manifest.json")
    )

    failed_node = (await stratum.store.node_executions(run))["publish-release"]

    await redeliver(stratum, RunAccepted.TYPE)  # the planner's guarded write is stale
    # the window in which the stage has failed but the planner has not moved the run on yet
    await stratum.store.db.query(
        "UPDATE type::thing('run', $run) SET status = 'Running';", {"run": run}
    )
    await redeliver(stratum, ExecuteStage.TYPE, stage=2)  # the failed stage must not rerun

    async def all_settled() -> bool:
        return await settled(stratum, "planner") and await settled(stratum, "stage-executor")

    await eventually(all_settled, timeout=30)
    await asyncio.sleep(0.5)
    assert (
        sorted((stratum.server.settings.data_dir / "runs" / run).rglob("manifest.json")) == bundles
    )
    assert (await stratum.store.node_executions(run))["publish-release"] == failed_node
