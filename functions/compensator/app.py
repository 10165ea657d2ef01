"""Compensator: undoes a failed run's succeeded nodes in reverse order.

The planner asks it only when one of them has a compensate script (`stratum.runs.saga`); a
run with nothing to undo ends Failed without a saga.

It undoes a cancelled run the same way (the stage executor hands it over once the
cancelled stage has stopped); that run ends Cancelled instead of Compensated.

Each step's compensate script is retried per its node's retry policy; a step that still
fails is recorded and the rest still run. The run ends Compensated (Cancelled), or
CompensationFailed naming the failed steps.

A step is marked running before its script starts and recorded as it ends, so a
redelivery (the process died mid-saga) resumes where the saga stopped: a step that ended —
succeeded, failed after all its attempts, or skipped — is final and never runs again; a
step cut short runs again, its attempts numbered in a new block (compensate scripts must
tolerate running twice, as handlers must).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from functions.compensator import core
from functions.compensator.core import Undone
from functions.compensator.ports import CompensatorStore
from functions.compensator.undo import undo
from stratum.clock import iso, utc_now
from stratum.errors import UnknownRunError
from stratum.events import (
    CompensateRun,
    CompensationRecorded,
    Envelope,
    RunCancelled,
    RunCompensated,
)
from stratum.executor import ExecutorConfig
from stratum.graph import ActionGraph
from stratum.graph.registry import GraphRegistry
from stratum.runs.cancel import CancelOrder
from stratum.runs.saga import undo_order
from stratum.runtime import Declaration, Dependencies, Inbound, run_key
from stratum.runtime.faults import crash_point
from stratum.telemetry import metrics, tracing


@dataclass(frozen=True)
class Saga:
    """Every step of the saga, ended (this delivery's and earlier ones'), by node; and the
    cancel that started it, if an operator's did."""

    steps: dict[str, Mapping[str, Any]]
    cancel: CancelOrder | None = None


@dataclass(frozen=True)
class SagaEnd:
    command: Envelope
    failed: list[str]
    final: Envelope
    cancelled: bool = False


class CompensatorHandler:
    def __init__(self, dependencies: Dependencies) -> None:
        self.store: CompensatorStore = dependencies.store
        self.graphs: GraphRegistry = dependencies.graph_registry()
        self.config: ExecutorConfig = dependencies.executor_config()
        self.publisher = dependencies.publisher
        self.log = dependencies.log

    def parse(self, inbound: Inbound) -> Envelope:
        command = Envelope.from_bytes(inbound.body)
        command.payload(CompensateRun)
        return command

    async def load(self, event: Envelope) -> Saga:
        """Run the saga's steps that have not ended: each is recorded and announced as it
        ends, so the state its end is decided from is every step's record."""
        run_id = event.runid
        run, executions, capabilities = await self.store.run_state(run_id)
        if run is None:
            raise UnknownRunError(f"compensation command {event.id} names unknown run {run_id}")
        # each node as it was declared when it ran (a resume may have changed it since)
        graph = await self.graphs.as_ran(run["graph_version"], executions)
        steps = core.ended(await self.store.compensations(run_id))
        for order, (stage, node_id) in enumerate(undo_order(executions)):
            if node_id in steps:
                continue  # ended in an earlier delivery: never run again
            with tracing.span(
                f"compensation step {node_id}",
                {"stratum.node.id": node_id, "stratum.stage": stage, "stratum.order": order},
            ) as span:
                steps[node_id] = await self.step(
                    event, run, capabilities, graph, order, stage, node_id
                )
                span.set_attribute("stratum.compensation.status", steps[node_id]["status"])
                if steps[node_id]["status"] == "failed":
                    tracing.failed(span, str(steps[node_id].get("error")))
        return Saga(steps, CancelOrder.of(run.get("cancel")))

    def decide(self, event: Envelope, state: Saga, now: datetime) -> SagaEnd:
        final = core.compensated(event, state.steps, now, state.cancel)
        return SagaEnd(event, final.data["failed"], final, state.cancel is not None)

    async def commit(self, decision: SagaEnd) -> Sequence[Envelope]:
        command, failed = decision.command, decision.failed
        await self.store.finish_compensation(
            command.runid, failed, [decision.final], command.id, cancelled=decision.cancelled
        )
        ended = "run cancelled" if decision.cancelled else "run compensated"
        self.log.log(
            logging.WARNING if failed else logging.INFO,
            "compensation failed" if failed else ended,
            extra={"failed": failed},
        )
        return [decision.final]

    async def step(
        self,
        command: Envelope,
        run: dict[str, Any],
        capabilities: dict[str, Any],
        graph: ActionGraph,
        order: int,
        stage: int,
        node_id: str,
    ) -> dict[str, Any]:
        """One saga step: run (or skip) the node's compensate script, record it, announce."""
        run_id = command.runid
        node = graph.nodes.get(node_id)
        started = utc_now()
        if node is None:  # declared nowhere any more (a record from before versions were kept)
            why = f"node {node_id} is not in graph version {graph.version}: cannot undo it"
            done = Undone(status="failed", attempts=0, duration_ms=0.0, error=why)
        elif node.compensate is None:
            done = Undone(status="skipped", attempts=0, duration_ms=0.0)
        else:
            payload = core.compensation_payload(run, node.consumes, node.produces, capabilities)
            execution = self.config.context(run_id, command.tenant, stage)
            nth = await self.store.begin_compensation(run_id, node_id)
            first = core.first_attempt(nth, node.retries.max)
            crash_point("compensator.step-starting")  # marked running, script not yet
            done = await undo(node, payload, execution, first, self.config.credentials)
        now = utc_now()
        event = core.step(command, order, stage, node_id, done, now)
        record = {
            **done.model_dump(),
            "order": order,
            "stage": stage,
            "started_at": iso(started),
            "finished_at": iso(now),
        }
        await self.store.record_compensation(run_id, node_id, record, [event], command.id)
        metrics.COMPENSATIONS.labels(command.tenant, node_id, done.status).inc()
        self.log.log(
            logging.WARNING if done.status == "failed" else logging.INFO,
            f"compensation of {node_id} {done.status}",
            extra={"node": node_id, "status": done.status, "attempts": done.attempts},
        )
        await self.publisher.publish(event)
        crash_point("compensator.step-recorded")  # later steps not yet run
        return record


DECLARATION = Declaration(
    name="compensator",
    handler=CompensatorHandler,
    consumes=(CompensateRun.TYPE,),
    emits=(CompensationRecorded.TYPE, RunCompensated.TYPE, RunCancelled.TYPE),
    key=run_key,
    ends_runs=True,
    concurrency=16,
    reads_graph=True,
    runs_scripts=True,
)
