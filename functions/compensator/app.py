"""Compensator: undoes a failed run's succeeded nodes in reverse order (best effort: a
failing compensation is recorded and the rest still run); the run ends Compensated."""

from __future__ import annotations

from collections.abc import Sequence

from functions.compensator import core
from functions.compensator.core import StepStatus
from stratum.clock import iso, utc_now
from stratum.errors import UnknownRunError
from stratum.events import CompensateRun, Envelope
from stratum.executor import ExecutorConfig, run_compensation
from stratum.graph_registry import GraphRegistry
from stratum.runtime import Function, FunctionContext, Inbound, run_key


def build(ctx: FunctionContext, graphs: GraphRegistry, config: ExecutorConfig) -> Function:
    async def handle(inbound: Inbound) -> Sequence[Envelope]:
        command = Envelope.from_bytes(inbound.body)
        command.payload(CompensateRun)
        run_id = command.runid
        run, executions, capabilities = await ctx.store.run_state(run_id)
        if run is None:
            raise UnknownRunError(f"compensation command {command.id} names unknown run {run_id}")
        graph = await graphs.version(run["graph_version"])
        steps = dict(await ctx.store.compensations(run_id))
        for order, (stage, node_id) in enumerate(core.undo_order(executions)):
            if node_id in steps:
                continue  # recorded by an earlier delivery: never undo twice
            node = graph.nodes[node_id]
            started = utc_now()
            if node.compensate is None:
                status: StepStatus = "skipped"
                error, bundle, duration_ms = None, None, 0.0
            else:
                execution = config.context(run_id, command.tenant, stage)
                payload = core.compensation_payload(run, node.consumes, node.produces, capabilities)
                outcome = await run_compensation(node, payload, execution)
                status = "succeeded" if outcome.status == "succeeded" else "failed"
                error = outcome.error
                bundle = str(outcome.attempts[-1].bundle) if outcome.attempts else None
                duration_ms = (outcome.finished_at - outcome.started_at).total_seconds() * 1000
            now = utc_now()
            event = core.step(
                command, order, stage, node_id, status, duration_ms, error, bundle, now
            )
            record = {
                "order": order,
                "stage": stage,
                "status": status,
                "error": error,
                "bundle": bundle,
                "duration_ms": duration_ms,
                "started_at": iso(started),
                "finished_at": iso(now),
            }
            await ctx.store.record_compensation(run_id, node_id, record, [event], command.id)
            await ctx.publisher.publish(event)
            steps[node_id] = record
        final = core.compensated(command, steps, utc_now())
        failed = final.data["failed"]
        await ctx.store.finish_compensation(run_id, failed, [final], command.id)
        return [final]

    return Function(
        name="compensator",
        stream=ctx.subjects.runs_stream,
        subjects=(ctx.subjects.internal(CompensateRun.TYPE),),
        handle=handle,
        key=run_key,
        concurrency=16,
        ack_wait=30.0,
    )
