"""Planner: plans accepted runs (queued first when their tenant is at its concurrent-run
limit) and dispatches their first stage; when a run ends, admits the next queued run of
its tenant. From stage to stage the stage executor drives the run itself.

It also applies operators' requests, authorized by the API. A cancel
(`stratum.run.cancel`): a run that has not started ends Cancelled here; a planned or
running one becomes Cancelling, and the stage executor running its stage stops it
(`stratum.run.cancelling`); a held one goes to the saga. A resume (`stratum.run.resume`)
plans a held run anew with the definitions in force and dispatches the stage it failed
in (`stratum.run.resumed`, in the run's next resumption)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from functions.planner import core
from functions.planner.ports import PlannerStore
from functions.planner.queue import RunQueue
from stratum.errors import ConflictError, RetryableError, UnknownRunError
from stratum.events import (
    CancelRun,
    CompensateRun,
    Envelope,
    ExecuteStage,
    ResumeRun,
    RunAccepted,
    RunAdmitted,
    RunCancelled,
    RunCancelling,
    RunCompensated,
    RunFailed,
    RunPlanned,
    RunQueued,
    RunRejected,
    RunResumed,
    RunSucceeded,
)
from stratum.graph import ActionGraph
from stratum.graph.registry import GraphRegistry
from stratum.runs.saga import undoable
from stratum.runs.status import RunStatus
from stratum.runtime import Declaration, Dependencies, Inbound, run_key
from stratum.store import AtLimitError, StaleWriteError
from stratum.telemetry import metrics, tracing

# how often a run is offered a slot that keeps being taken before it is handled again
ADMISSION_TRIES = 3
# events that may end a run (`core.ends_run`): one of its tenant's queued runs may start
ENDED = (RunSucceeded.TYPE, RunCompensated.TYPE, RunFailed.TYPE, RunCancelled.TYPE)


@dataclass(frozen=True)
class ToPlan:
    """A run to plan: its `run.accepted` (for an admitted run, read back from the store,
    so that what planning causes is recorded as caused by that event) and the graph."""

    accepted: Envelope
    graph: ActionGraph | None
    graph_error: str | None
    admitted: bool = False


@dataclass(frozen=True)
class Plan:
    accepted: Envelope
    topic: str
    outcome: core.Planned | core.Rejected
    graph: ActionGraph | None
    admitted: bool
    now: datetime


@dataclass(frozen=True)
class Wake:
    """A run ended: its tenant's oldest queued runs that now fit are admitted."""

    ended: Envelope
    now: datetime


@dataclass(frozen=True)
class ToCancel:
    """A cancel request, and its run as stored (for a held run, what the saga would
    undo, in order)."""

    run: dict[str, Any]
    undo: tuple[str, ...] = ()


@dataclass(frozen=True)
class ToResume:
    """A resume request, its run as stored, the graph in force and the run's nodes that
    succeeded."""

    run: dict[str, Any]
    graph: ActionGraph | None
    graph_error: str | None
    succeeded: frozenset[str]


@dataclass(frozen=True)
class Cancelling:
    command: Envelope
    cancel: core.Cancel


@dataclass(frozen=True)
class Resuming:
    command: Envelope
    resume: core.Resume
    graph: ActionGraph | None


class Ignore:
    """A `run.failed` that a saga follows: the saga ends the run."""


PlannerDecision = Plan | Wake | Cancelling | Resuming | Ignore


class PlannerHandler:
    def __init__(self, dependencies: Dependencies) -> None:
        self.store: PlannerStore = dependencies.store
        self.graphs: GraphRegistry = dependencies.graph_registry()
        self.queue = RunQueue(dependencies.store, dependencies.settings.tenant_limits)
        self.log = dependencies.log

    def parse(self, inbound: Inbound) -> Envelope:
        return Envelope.from_bytes(inbound.body)

    async def load(self, event: Envelope) -> ToPlan | ToCancel | ToResume | None:
        if event.type == RunAccepted.TYPE:
            return ToPlan(event, self.graphs.current, self.graphs.error)
        if event.type in (CancelRun.TYPE, ResumeRun.TYPE):
            run, executions, _ = await self.store.run_state(event.runid)
            if run is None:
                raise UnknownRunError(f"request {event.id} names unknown run {event.runid}")
            if event.type == ResumeRun.TYPE:
                succeeded = frozenset(
                    node for node, r in executions.items() if r.get("status") == "succeeded"
                )
                return ToResume(run, self.graphs.current, self.graphs.error, succeeded)
            if run.get("status") != RunStatus.HELD:
                return ToCancel(run)
            graph = await self.graphs.as_ran(str(run["graph_version"]), executions)
            return ToCancel(run, tuple(undoable(executions, graph)))
        if event.type != RunAdmitted.TYPE:
            return None
        # a queued run's turn: plan it as its `run.accepted` asked
        found = await self.store.last_event_of(event.runid, [RunAccepted.TYPE])
        if found is None:
            raise UnknownRunError(f"event {event.id} admits run {event.runid}, which has none")
        accepted, trace = found
        tracing.adopt(trace)  # the admitted run's own trace, not the ender's
        return ToPlan(accepted, self.graphs.current, self.graphs.error, admitted=True)

    def decide(
        self, event: Envelope, state: ToPlan | ToCancel | ToResume | None, now: datetime
    ) -> PlannerDecision:
        if isinstance(state, ToCancel):
            return Cancelling(event, core.on_cancel(event, state.run, now, state.undo))
        if isinstance(state, ToResume):
            resume = core.on_resume(
                event, state.run, state.graph, state.graph_error, state.succeeded, now
            )
            return Resuming(event, resume, state.graph)
        if state is not None:
            accepted = state.accepted
            topic = accepted.payload(RunAccepted).topic
            outcome = core.on_accepted(accepted, topic, state.graph, state.graph_error, now)
            return Plan(accepted, topic, outcome, state.graph, state.admitted, now)
        if core.ends_run(event):
            return Wake(event, now)
        return Ignore()

    async def commit(self, decision: PlannerDecision) -> Sequence[Envelope]:
        if isinstance(decision, Wake):
            return await self.queue.wake(decision.ended, decision.now)
        if isinstance(decision, Ignore):
            return []
        if isinstance(decision, Cancelling):
            return await self.cancel(decision.command, decision.cancel)
        if isinstance(decision, Resuming):
            return await self.resume(decision)
        try:
            return await self.plan(decision)
        except StaleWriteError:
            if not decision.admitted:
                raise  # the runner re-announces what this message caused
            # planned already (by an earlier delivery or admission): announce that plan
            return await self.store.events_caused_by(decision.accepted.id)

    async def plan(self, decision: Plan) -> Sequence[Envelope]:
        accepted, outcome = decision.accepted, decision.outcome
        with tracing.span("plan", {"stratum.topic": decision.topic}) as planning:
            if isinstance(outcome, core.Rejected):
                tracing.failed(planning, outcome.error)
                await self.store.reject_run(
                    accepted.runid, outcome.error, outcome.events, accepted.id
                )
                return outcome.events
            assert decision.graph is not None
            planning.set_attribute("stratum.graph.version", outcome.graph_version)
            planning.set_attribute("stratum.stages", len(outcome.stages))
            await self.graphs.remember(decision.graph)
            async with self.queue.turn(accepted.tenant):
                waiting = await self.store_or_queue(accepted, outcome, decision.now)
        if waiting is not None:
            self.log.info(
                "run queued: its tenant is at its concurrent-run limit",
                extra={"run_id": accepted.runid, "tenant": accepted.tenant},
            )
            return waiting
        self.log.info(
            "run planned",
            extra={"graph_version": outcome.graph_version, "stages": len(outcome.stages)},
        )
        return outcome.events

    async def cancel(self, command: Envelope, cancel: core.Cancel) -> Sequence[Envelope]:
        """Apply a cancel request as decided; decided again (delivered again at once) if
        the run moved meanwhile."""
        run_id, entry = command.runid, cancel.entry
        if cancel.outcome == "repeat":  # applied before: announce what it caused again
            return await self.store.events_caused_by(command.id)
        if cancel.outcome == "ignored":
            await self.store.record_intervention(run_id, entry)
        else:
            finished = cancel.outcome == "cancelled"
            status = {
                "cancelled": RunStatus.CANCELLED,
                "compensating": RunStatus.COMPENSATING,
            }.get(cancel.outcome, RunStatus.CANCELLING)
            try:
                await self.store.cancel_run(
                    run_id,
                    seen=cancel.seen,
                    status=status.value,
                    entry=entry,
                    events=cancel.events,
                    cause=command.id,
                    finished=finished,
                )
            except StaleWriteError:
                raise ConflictError(
                    f"run {run_id} moved from {cancel.seen} while its cancel was decided"
                ) from None
        metrics.INTERVENTIONS.labels(command.tenant, "cancel", cancel.outcome.split(":")[0]).inc()
        self.log.log(
            logging.WARNING if cancel.outcome == "ignored" else logging.INFO,
            f"cancel {entry.get('outcome')}",
            extra={"actor": entry["actor"], "reason": entry["reason"], "was": cancel.seen},
        )
        return cancel.events

    async def resume(self, decision: Resuming) -> Sequence[Envelope]:
        """Apply a resume request as decided: the run planned anew with the graph in force
        (remembered first, as for a new run) and its stage dispatched."""
        command, resume = decision.command, decision.resume
        run_id, entry = command.runid, resume.entry
        if resume.outcome == "repeat":
            return await self.store.events_caused_by(command.id)
        if resume.outcome == "ignored":
            await self.store.record_intervention(run_id, entry)
        else:
            assert decision.graph is not None
            await self.graphs.remember(decision.graph)
            try:
                await self.store.resume_run(
                    run_id,
                    resumption=resume.resumption,
                    graph_version=resume.graph_version,
                    stages=resume.stages,
                    stage_links=resume.links,
                    from_stage=resume.from_stage,
                    entry=entry,
                    events=resume.events,
                    cause=command.id,
                )
            except StaleWriteError:
                raise ConflictError(
                    f"run {run_id} moved from {resume.seen} while its resume was decided"
                ) from None
        metrics.INTERVENTIONS.labels(command.tenant, "resume", resume.outcome).inc()
        self.log.log(
            logging.WARNING if resume.outcome == "ignored" else logging.INFO,
            f"resume {entry.get('outcome')}",
            extra={"actor": entry["actor"], "reason": entry["reason"], "was": resume.seen},
        )
        return resume.events

    async def store_or_queue(
        self, accepted: Envelope, planned: core.Planned, now: datetime
    ) -> list[Envelope] | None:
        """Inside the tenant's turn: store the plan while the tenant is under its limit
        (checked in the plan's own transaction), else queue the run and return what that
        announces."""
        for _ in range(ADMISSION_TRIES):
            try:
                await self.store.record_plan(
                    accepted.runid,
                    graph_version=planned.graph_version,
                    stages=planned.stages,
                    stage_links=planned.links,
                    events=planned.events,
                    cause=accepted.id,
                    tenant=accepted.tenant,
                    limit=self.queue.limit(accepted.tenant),
                )
                return None
            except AtLimitError:
                waiting = await self.queue.queue_if_full(accepted, now)
                if waiting is not None:
                    return waiting
                # a slot came free meanwhile (a run of another process ended): again
        raise RetryableError(f"tenant {accepted.tenant}'s load kept changing")


DECLARATION = Declaration(
    name="planner",
    handler=PlannerHandler,
    consumes=(RunAccepted.TYPE, RunAdmitted.TYPE, CancelRun.TYPE, ResumeRun.TYPE, *ENDED),
    emits=(
        RunPlanned.TYPE,
        ExecuteStage.TYPE,
        RunRejected.TYPE,
        RunQueued.TYPE,
        RunAdmitted.TYPE,
        RunCancelling.TYPE,
        RunCancelled.TYPE,
        RunResumed.TYPE,
        CompensateRun.TYPE,
    ),
    key=run_key,
    ends_runs=True,
    concurrency=16,
    reads_graph=True,
)
