"""Compensator: undoes a failed run's succeeded nodes in reverse order.

The planner asks it only when one of them has a compensate script (`stratum.runs.saga`); a
run with nothing to undo ends Failed without a saga.

Each step's compensate script is retried per its node's retry policy; a step that still
fails is recorded and the rest still run. The run ends Compensated, or CompensationFailed
naming the failed steps.

A step is marked running before its script starts and recorded as it ends, so a
redelivery (the process died mid-saga) resumes where the saga stopped: a step that ended —
succeeded, failed after all its attempts, or skipped — is final and never runs again; a
step cut short runs again, its attempts numbered in a new block (compensate scripts must
tolerate running twice, as handlers must).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from functions.compensator import core
from functions.compensator.core import Undone
from functions.compensator.undo import undo
from stratum.clock import iso, utc_now
from stratum.errors import UnknownRunError
from stratum.events import CompensateRun, CompensationRecorded, Envelope, RunCompensated
from stratum.executor import ExecutorConfig
from stratum.graph import ActionGraph
from stratum.graph.registry import GraphRegistry
from stratum.runs.saga import undo_order
from stratum.runtime import Function, FunctionContext, Inbound, run_key
from stratum.runtime.faults import crash_point
from stratum.telemetry import metrics, tracing


def build(ctx: FunctionContext, graphs: GraphRegistry, config: ExecutorConfig) -> Function:
    async def handle(inbound: Inbound) -> Sequence[Envelope]:
        command = Envelope.from_bytes(inbound.body)
        command.payload(CompensateRun)
        run_id = command.runid
        run, executions, capabilities = await ctx.store.run_state(run_id)
        if run is None:
            raise UnknownRunError(f"compensation command {command.id} names unknown run {run_id}")
        graph = await graphs.version(run["graph_version"])
        steps = core.ended(await ctx.store.compensations(run_id))
        for order, (stage, node_id) in enumerate(undo_order(executions)):
            if node_id in steps:
                continue  # ended in an earlier delivery: never run again
            with tracing.span(
                f"compensation step {node_id}",
                {"stratum.node.id": node_id, "stratum.stage": stage, "stratum.order": order},
            ) as span:
                steps[node_id] = await step(
                    command, run, capabilities, graph, order, stage, node_id
                )
                span.set_attribute("stratum.compensation.status", steps[node_id]["status"])
                if steps[node_id]["status"] == "failed":
                    tracing.failed(span, str(steps[node_id].get("error")))
        final = core.compensated(command, steps, utc_now())
        failed = final.data["failed"]
        await ctx.store.finish_compensation(run_id, failed, [final], command.id)
        ctx.log.log(
            logging.WARNING if failed else logging.INFO,
            "compensation failed" if failed else "run compensated",
            extra={"failed": failed},
        )
        return [final]

    async def step(
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
        node = graph.nodes[node_id]
        started = utc_now()
        if node.compensate is None:
            done = Undone(status="skipped", attempts=0, duration_ms=0.0)
        else:
            payload = core.compensation_payload(run, node.consumes, node.produces, capabilities)
            execution = config.context(run_id, command.tenant, stage)
            nth = await ctx.store.begin_compensation(run_id, node_id)
            first = core.first_attempt(nth, node.retries.max)
            crash_point("compensator.step-starting")  # marked running, script not yet
            done = await undo(node, payload, execution, first, config.credentials)
        now = utc_now()
        event = core.step(command, order, stage, node_id, done, now)
        record = {
            **done.model_dump(),
            "order": order,
            "stage": stage,
            "started_at": iso(started),
            "finished_at": iso(now),
        }
        await ctx.store.record_compensation(run_id, node_id, record, [event], command.id)
        metrics.COMPENSATIONS.labels(command.tenant, node_id, done.status).inc()
        ctx.log.log(
            logging.WARNING if done.status == "failed" else logging.INFO,
            f"compensation of {node_id} {done.status}",
            extra={"node": node_id, "status": done.status, "attempts": done.attempts},
        )
        await ctx.publisher.publish(event)
        crash_point("compensator.step-recorded")  # later steps not yet run
        return record

    return Function(
        name="compensator",
        stream=ctx.subjects.runs_stream,
        subjects=(ctx.subjects.internal(CompensateRun.TYPE),),
        handle=handle,
        key=run_key,
        ends_runs=True,
        concurrency=16,
        emits=(CompensationRecorded.TYPE, RunCompensated.TYPE),
    )
