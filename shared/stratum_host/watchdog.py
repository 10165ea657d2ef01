"""Stuck-run detection: a run that stopped making progress is driven again.

JetStream redelivers a message whose handler died, so most crashes heal by themselves.
What it cannot heal: a message that ran out of deliveries (dead-lettered), or an event
that was committed to the outbox but never published because the message that caused it
was lost with its instance. The database still knows where every run stands, so a run
whose last recorded progress is older than its deadline has its last *driving* event
(the one a function acts on) published again. Handlers are idempotent — a step already
taken is stale and only re-announces what it caused — so driving a run that was merely
slow costs a few messages, never a second effect.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from stratum.clock import iso, utc_now
from stratum.errors import StratumError
from stratum.events import (
    CompensateRun,
    Envelope,
    ExecuteStage,
    RunAccepted,
)
from stratum.graph import ActionGraph
from stratum.graph.registry import GraphRegistry
from stratum.runtime.publisher import Publisher
from stratum.store import RunStore, StaleWriteError
from stratum.telemetry import tracing

log = logging.getLogger("stratum.watchdog")

# the events a function acts on: publishing the latest one again resumes the run (a stage
# command whose stage already ended re-announces what its end caused: the next stage's
# command, or the run's end)
DRIVING_TYPES = (
    RunAccepted.TYPE,
    ExecuteStage.TYPE,
    CompensateRun.TYPE,
)
# (a Cancelling run is driven by its last stage command: that stage is then stopped)
ACTIVE_STATUSES = ("Accepted", "Planned", "Running", "Cancelling", "Compensating")


@dataclass(frozen=True)
class Verdict:
    """Whether a run is stuck, and the deadline it was held to."""

    stuck: bool
    deadline: datetime


def script_budget(graph: ActionGraph | None, plan: list[list[str]] | None) -> float:
    """Seconds the run's scripts may legitimately take: every planned node at its timeout
    on every attempt, with backoff, and its compensation. An upper bound, on purpose: a
    busy run must never look stuck."""
    if graph is None or not plan:
        return 0.0
    total = 0.0
    for stage in plan:
        for node_id in stage:
            node = graph.nodes.get(node_id)
            if node is None:
                continue
            attempts = node.retries.max + 1
            backoff = sum(node.retries.delay_before(n) for n in range(1, attempts + 1))
            total += node.timeout * attempts + backoff
            if node.compensate is not None:
                total += node.timeout * attempts + backoff
    return total


def judge(run: Mapping[str, Any], now: datetime, stuck_after: float, budget: float) -> Verdict:
    """A run is stuck when nothing was recorded for longer than `stuck_after` and than
    its scripts' budget."""
    last = datetime.fromisoformat(str(run["updated_at"]).replace("Z", "+00:00"))
    deadline = last + timedelta(seconds=max(stuck_after, budget))
    return Verdict(stuck=now >= deadline, deadline=deadline)


class Watchdog:
    """Looks for stuck runs every `interval` seconds and drives each one again."""

    def __init__(
        self,
        store: RunStore,
        graphs: GraphRegistry,
        publisher: Publisher,
        *,
        stuck_after: float,
        interval: float,
    ) -> None:
        self.store = store
        self.graphs = graphs
        self.publisher = publisher
        self.stuck_after = stuck_after
        self.interval = interval

    async def run_forever(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.sweep()
            except asyncio.CancelledError:
                raise
            except Exception:  # a failed look is retried at the next interval
                log.exception("stuck-run sweep failed")

    async def sweep(self) -> list[str]:
        """One look: the ids of the runs driven again."""
        now = utc_now()
        cutoff = now - timedelta(seconds=self.stuck_after)
        driven = []
        for run in await self.store.quiet_runs(ACTIVE_STATUSES, iso(cutoff)):
            graph = None
            if run.get("graph_version"):
                with contextlib.suppress(StratumError):
                    graph = await self.graphs.version(run["graph_version"])
            verdict = judge(run, now, self.stuck_after, script_budget(graph, run.get("plan")))
            if verdict.stuck and await self._drive(run):
                driven.append(str(run["_id"]))
        return driven

    async def _drive(self, run: Mapping[str, Any]) -> bool:
        run_id = str(run["_id"])
        found = await self.store.last_event_of(run_id, DRIVING_TYPES)
        if found is None:
            return False
        event, trace = found
        try:
            # claims the run (another instance's watchdog then sees it as fresh)
            count = await self.store.claim_stuck_run(run_id, str(run["updated_at"]), iso(utc_now()))
        except StaleWriteError:
            return False  # it moved meanwhile, or another watchdog took it
        with tracing.resumed(trace):  # the re-drive shows in the run's own trace
            await self.publisher.redrive(event, count)
        log.warning(
            "stuck run driven again",
            extra={
                "run_id": run_id,
                "tenant": run.get("tenant"),
                "status": run.get("status"),
                "event": _describe(event),
            },
        )
        return True


def _describe(event: Envelope) -> str:
    return f"{event.type} {event.id}"
