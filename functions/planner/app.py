"""Planner: plans accepted runs (queued first when their tenant is at its concurrent-run
limit) and dispatches their first stage; when a run ends, admits the next queued run of
its tenant. From stage to stage the stage executor drives the run itself."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from opentelemetry.trace import Span

from functions.planner import core
from functions.planner.queue import RunQueue
from stratum.clock import utc_now
from stratum.errors import RetryableError, UnknownRunError
from stratum.events import (
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
)
from stratum.graph.registry import GraphRegistry
from stratum.runs.tenant_limits import TenantLimits
from stratum.runtime import Function, FunctionContext, Inbound, run_key
from stratum.store import AtLimitError, StaleWriteError
from stratum.telemetry import tracing

# how often a run is offered a slot that keeps being taken before it is handled again
ADMISSION_TRIES = 3
# events that may end a run (`core.ends_run`): one of its tenant's queued runs may start
ENDED = (RunSucceeded.TYPE, RunCompensated.TYPE, RunFailed.TYPE)


def build(
    ctx: FunctionContext, graphs: GraphRegistry, limits: TenantLimits | None = None
) -> Function:
    queue = RunQueue(ctx.store, limits or TenantLimits())

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
            waiting = await store_or_queue(event, decision, now)
        if waiting is not None:
            ctx.log.info(
                "run queued: its tenant is at its concurrent-run limit",
                extra={"run_id": event.runid, "tenant": event.tenant},
            )
            return waiting
        ctx.log.info(
            "run planned",
            extra={"graph_version": decision.graph_version, "stages": len(decision.stages)},
        )
        return decision.events

    async def store_or_queue(
        event: Envelope, decision: core.Planned, now: datetime
    ) -> list[Envelope] | None:
        """Inside the tenant's turn: store the plan while the tenant is under its limit
        (checked in the plan's own transaction), else queue the run and return what that
        announces."""
        for _ in range(ADMISSION_TRIES):
            try:
                await ctx.store.record_plan(
                    event.runid,
                    graph_version=decision.graph_version,
                    stages=decision.stages,
                    stage_links=decision.links,
                    events=decision.events,
                    cause=event.id,
                    tenant=event.tenant,
                    limit=queue.limit(event.tenant),
                )
                return None
            except AtLimitError:
                waiting = await queue.queue_if_full(event, now)
                if waiting is not None:
                    return waiting
                # a slot came free meanwhile (a run of another process ended): again
        raise RetryableError(f"tenant {event.tenant}'s load kept changing")

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
        return []  # a run.failed that a saga follows: the saga ends the run

    subjects = ctx.subjects
    return Function(
        name="planner",
        stream=subjects.runs_stream,
        subjects=(
            subjects.internal(RunAccepted.TYPE),
            subjects.internal(RunAdmitted.TYPE),
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
            RunQueued.TYPE,
            RunAdmitted.TYPE,
        ),
    )
