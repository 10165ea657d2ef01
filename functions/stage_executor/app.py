"""Stage executor: runs one stage's nodes in parallel (the first failure cancels the rest)
and drives the run from stage to stage.

Every node start and outcome is written to the DB (with the capabilities it produced)
before its event is published. The stage's result is stored in one transaction with what
it does to the run — the next stage's command, the run's success, or its failure (handed
to the compensator when something that succeeded can be undone) — so a stage boundary is
one write and one hop.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence

from functions.stage_executor import core
from stratum.clock import utc_now
from stratum.events import (
    CompensateRun,
    Envelope,
    ExecuteStage,
    NodeFailed,
    NodeStarted,
    NodeSucceeded,
    RunFailed,
    RunSucceeded,
    StageCompleted,
    StageFailed,
)
from stratum.executor import ExecutorConfig, NodeOutcome, run_stage
from stratum.graph.registry import GraphRegistry
from stratum.runs.status import RunStatus
from stratum.runtime import Function, FunctionContext, Inbound, run_key
from stratum.runtime.faults import crash_point
from stratum.store import RunChange
from stratum.telemetry import metrics, tracing


def build(ctx: FunctionContext, graphs: GraphRegistry, config: ExecutorConfig) -> Function:
    async def handle(inbound: Inbound) -> Sequence[Envelope]:
        command = Envelope.from_bytes(inbound.body)
        order = command.payload(ExecuteStage)
        with tracing.span(
            f"stage {order.stage}",
            {"stratum.stage": order.stage, "stratum.stage.nodes": len(order.nodes)},
        ) as span:
            events = await execute(inbound, command, order)
            if any(event.type == StageFailed.TYPE for event in events):
                tracing.failed(span, "a node failed")
            return events

    async def execute(
        inbound: Inbound, command: Envelope, order: ExecuteStage
    ) -> Sequence[Envelope]:
        run_id, stage = command.runid, order.stage
        # one transaction checks the stage may start, marks it and its pending nodes
        # started under this execution's lease, and reads what they need; a stage that
        # already ended is stale
        lease = uuid.uuid4().hex
        tag = core.execution_tag(
            command.id, inbound.headers.get("Nats-Msg-Id", ""), inbound.delivery
        )
        every_start = core.started(command, stage, order.nodes, utc_now(), tag)
        run, capabilities, todo, executions = await ctx.store.begin_stage(
            run_id, stage, order.nodes, every_start, command.id, lease
        )
        started = [event for event in every_start if event.data["node"] in todo]
        await asyncio.gather(*(ctx.publisher.publish(event) for event in started))
        graph = await graphs.version(run["graph_version"])

        nodes = [graph.nodes[node] for node in todo]
        payloads = {node.id: core.node_payload(run, node, capabilities) for node in nodes}
        first_attempts = {
            node.id: core.first_attempt(todo[node.id], node.retries.max) for node in nodes
        }
        execution = config.context(run_id, command.tenant, stage)

        unrecorded = len(nodes)
        last: list[NodeOutcome] = []

        async def record(outcome: NodeOutcome) -> None:
            nonlocal unrecorded
            seconds = (outcome.finished_at - outcome.started_at).total_seconds()
            metrics.NODE_DURATION.labels(command.tenant, outcome.node_id, outcome.status).observe(
                seconds
            )
            ctx.log.log(
                logging.INFO if outcome.status == "succeeded" else logging.WARNING,
                f"node {outcome.node_id} {outcome.status}",
                extra={
                    "node": outcome.node_id,
                    "status": outcome.status,
                    "attempts": len(outcome.attempts),
                    "duration_ms": round(seconds * 1000, 1),
                    "error": outcome.error,
                },
            )
            unrecorded -= 1
            if unrecorded == 0:
                last.append(outcome)  # written with the stage's result, in one transaction
                return
            node_record, event = core.finished(command, stage, outcome, tag)
            await ctx.store.finish_node(
                run_id, outcome.node_id, node_record, outcome.outputs, [event], command.id, lease
            )
            await ctx.publisher.publish(event)
            crash_point("stage-executor.node-recorded")  # siblings may still be running

        metrics.STAGE_FANOUT.labels(command.tenant).observe(len(nodes))
        crash_point("stage-executor.nodes-starting")  # marked started, no script runs yet
        result = await run_stage(
            nodes,
            payloads,
            graph.schemas,
            execution,
            on_node_done=record,
            first_attempts=first_attempts,
            credentials=config.credentials,
        )
        now = utc_now()
        final = core.stage_result(command, stage, order.nodes, result.nodes, now)
        status = "Failed" if result.failed else "Succeeded"
        for outcome in result.nodes:
            executions[outcome.node_id] = {"stage": stage, "status": outcome.status}
            capabilities |= outcome.outputs
        step = core.after_stage(final, run["plan"], executions, capabilities, graph, now)
        events = [final, *step.events]
        last_node = None
        if last:
            node_record, node_event = core.finished(command, stage, last[0], tag)
            last_node = (last[0].node_id, node_record, last[0].outputs)
            events.insert(0, node_event)
        await ctx.store.finish_stage(
            run_id,
            stage,
            status,
            events,
            command.id,
            lease=lease,
            last_node=last_node,
            then=run_change(step),
        )
        log_step(stage, step)
        return events

    def log_step(stage: int, step: core.RunStep) -> None:
        if step.kind == "succeed":
            ctx.log.info("run succeeded")
        elif step.kind == "fail":
            ctx.log.warning(
                f"run failed at stage {stage}; "
                + (f"compensating {', '.join(step.undo)}" if step.undo else "nothing to undo"),
                extra={"error": step.error},
            )

    return Function(
        name="stage-executor",
        stream=ctx.subjects.runs_stream,
        subjects=(ctx.subjects.internal(ExecuteStage.TYPE),),
        handle=handle,
        key=run_key,
        ends_runs=True,
        concurrency=config.concurrency,
        emits=(
            NodeStarted.TYPE,
            NodeSucceeded.TYPE,
            NodeFailed.TYPE,
            StageCompleted.TYPE,
            StageFailed.TYPE,
            ExecuteStage.TYPE,
            RunSucceeded.TYPE,
            RunFailed.TYPE,
            CompensateRun.TYPE,
        ),
    )


def run_change(step: core.RunStep) -> RunChange:
    """The store's form of what the stage's end does to the run."""
    if step.kind == "advance":
        return RunChange()
    if step.kind == "succeed":
        return RunChange(RunStatus.SUCCEEDED, outputs_hash=step.outputs_hash)
    status = RunStatus.COMPENSATING if step.compensating else RunStatus.FAILED
    return RunChange(status, error=step.error)
