"""Planner: plans accepted runs (queued first when their tenant is at its concurrent-run
limit), dispatches stage after stage, marks runs Succeeded, and on a failed stage hands
the run over to the compensator — or, when nothing that succeeded can be undone, ends it
Failed."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from datetime import datetime

from opentelemetry.trace import Span

from functions.planner import core
from functions.planner.queue import RunQueue
from stratum.clock import utc_now
from stratum.errors import UnknownRunError
from stratum.events import (
    CompensateRun,
    Envelope,
    ExecuteStage,
    RunAccepted,
    RunAdmitted,
    RunCompensated,
    RunFailed,
    RunPlanned,
    RunQueued,
    RunRejected,
    RunSucceeded,
    StageCompleted,
    StageFailed,
)
from stratum.graph_registry import GraphRegistry
from stratum.runtime import Function, FunctionContext, Inbound, run_key
from stratum.saga import undoable
from stratum.store import StaleWriteError
from stratum.telemetry import tracing
from stratum.tenant_limits import TenantLimits

PLANS_CACHED = 4096
# events that may end a run (`core.ends_run`): one of its tenant's queued runs may start
ENDED = (RunSucceeded.TYPE, RunCompensated.TYPE, RunFailed.TYPE)


def build(
    ctx: FunctionContext, graphs: GraphRegistry, limits: TenantLimits | None = None
) -> Function:
    queue = RunQueue(ctx.store, limits or TenantLimits())
    # a run's plan never changes once stored, so this process may keep it (bounded)
    plans: OrderedDict[str, list[list[str]]] = OrderedDict()

    def remember(run_id: str, stages: list[list[str]]) -> None:
        plans[run_id] = stages
        while len(plans) > PLANS_CACHED:
            plans.popitem(last=False)

    async def plan_of(run_id: str, cause: str) -> list[list[str]]:
        stages = plans.get(run_id)
        if stages is None:
            run = await ctx.store.get_run(run_id)
            if run is None or "plan" not in run:
                raise UnknownRunError(f"event {cause} names run {run_id}, which has no plan")
            stages = run["plan"]
            remember(run_id, stages)
        return stages

    async def on_stage_failed(event: Envelope, now: datetime) -> Sequence[Envelope]:
        """Compensating when something that succeeded can be undone, else Failed: the
        decision is stored with its events, so a redelivery finds it taken (stale)."""
        failure = event.payload(StageFailed)
        to_undo = await undoable_nodes(event)
        events = core.failed(event, failure.stage, failure.error, to_undo, now)
        await ctx.store.fail_run(
            event.runid, failure.stage, failure.error, events, event.id, compensating=bool(to_undo)
        )
        ctx.log.warning(
            f"run failed at stage {failure.stage}; "
            + (f"compensating {', '.join(to_undo)}" if to_undo else "nothing to undo"),
            extra={"error": failure.error},
        )
        return events

    async def undoable_nodes(stage_failed: Envelope) -> list[str]:
        """What a saga would undo, from the run's stored node outcomes (all of them are
        recorded before `stage.failed` is) and its pinned graph version."""
        run_id = stage_failed.runid
        run = await ctx.store.get_run(run_id)
        if run is None or not run.get("graph_version"):
            raise UnknownRunError(f"event {stage_failed.id} names run {run_id}, never planned")
        graph = await graphs.version(run["graph_version"])
        return undoable(await ctx.store.node_executions(run_id), graph)

    async def on_accepted(event: Envelope, now: datetime) -> Sequence[Envelope]:
        accepted = event.payload(RunAccepted)
        with tracing.span("plan", {"stratum.topic": accepted.topic}) as planning:
            return await plan(event, accepted, now, planning)

    async def plan(
        event: Envelope, accepted: RunAccepted, now: datetime, planning: Span
    ) -> Sequence[Envelope]:
        graph = graphs.current
        decision = core.on_accepted(event, accepted.topic, graph, graphs.error, now)
        if isinstance(decision, core.Rejected):
            tracing.failed(planning, decision.error)
            await ctx.store.reject_run(event.runid, decision.error, decision.events, event.id)
            return decision.events
        assert graph is not None
        planning.set_attribute("stratum.graph.version", decision.graph_version)
        planning.set_attribute("stratum.stages", len(decision.stages))
        await graphs.remember(graph)
        async with queue.turn(event.tenant):
            waiting = await queue.queue_if_full(event, now)
            if waiting is not None:
                ctx.log.info(
                    "run queued: its tenant is at its concurrent-run limit",
                    extra={"run_id": event.runid, "tenant": event.tenant},
                )
                return waiting
            await ctx.store.record_plan(
                event.runid,
                graph_version=decision.graph_version,
                stages=decision.stages,
                stage_links=decision.links,
                events=decision.events,
                cause=event.id,
            )
        remember(event.runid, [list(stage) for stage in decision.stages])
        ctx.log.info(
            "run planned",
            extra={"graph_version": decision.graph_version, "stages": len(decision.stages)},
        )
        return decision.events

    async def on_admitted(event: Envelope, now: datetime) -> Sequence[Envelope]:
        """A queued run's turn: plan it as its `run.accepted` asked, so that what it
        causes is recorded as caused by that event (which the watchdog drives again)."""
        found = await ctx.store.last_event_of(event.runid, [RunAccepted.TYPE])
        if found is None:
            raise UnknownRunError(f"event {event.id} admits run {event.runid}, which has none")
        accepted, trace = found
        tracing.adopt(trace)  # the admitted run's own trace, not the ender's
        try:
            return await on_accepted(accepted, now)
        except StaleWriteError:
            # planned already (by an earlier delivery or admission): announce that plan
            return await ctx.store.events_caused_by(accepted.id)

    async def handle(inbound: Inbound) -> Sequence[Envelope]:
        event = Envelope.from_bytes(inbound.body)
        now = utc_now()
        if event.type == RunAccepted.TYPE:
            return await on_accepted(event, now)
        if event.type == RunAdmitted.TYPE:
            return await on_admitted(event, now)
        if core.ends_run(event):
            return await queue.wake(event, now)

        if event.type == StageCompleted.TYPE:
            stage = event.payload(StageCompleted).stage
            following = core.next_stage(event, stage, await plan_of(event.runid, event.id), now)
            if following is not None:
                await ctx.store.advance_stage(event.runid, stage, [following], event.id)
                return [following]
            done = core.succeeded(event, await ctx.store.capabilities(event.runid), now)
            await ctx.store.succeed_run(
                event.runid, stage, done.data["outputs_hash"], [done], event.id
            )
            ctx.log.info("run succeeded")
            return [done]
        if event.type == StageFailed.TYPE:
            return await on_stage_failed(event, now)
        return []  # a run.failed that a saga follows: the saga ends the run

    subjects = ctx.subjects
    return Function(
        name="planner",
        stream=subjects.runs_stream,
        subjects=(
            subjects.internal(RunAccepted.TYPE),
            subjects.internal(RunAdmitted.TYPE),
            subjects.internal(StageCompleted.TYPE),
            subjects.internal(StageFailed.TYPE),
            *(subjects.internal(kind) for kind in ENDED),
        ),
        handle=handle,
        key=run_key,
        ends_runs=True,
        concurrency=16,
        emits=(
            RunPlanned.TYPE,
            ExecuteStage.TYPE,
            RunRejected.TYPE,
            RunFailed.TYPE,
            CompensateRun.TYPE,
            RunSucceeded.TYPE,
            RunQueued.TYPE,
            RunAdmitted.TYPE,
        ),
    )
