"""Stage executor: runs one stage's nodes in parallel (the first failure cancels the rest)
and drives the run from stage to stage.

Every node start and outcome is written to the DB (with the capabilities it produced)
before its event is published. The stage's result is stored in one transaction with what
it does to the run — the next stage's command, the run's success, or its failure (handed
to the compensator when something that succeeded can be undone) — so a stage boundary is
one write and one hop.

A run being cancelled (`stratum.run.cancelling`, heard by every instance) has its running
stage stopped: every script killed, the stage Failed, then what succeeded handed to the
saga, or the run ended Cancelled. A stage whose command comes when the run is already
Cancelling runs nothing and is stopped the same way; a stage that ends without having
heard the cancel finds it when it stores its end (`CancellingError`) and stops then.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from functions.stage_executor import core
from functions.stage_executor.ports import StageStore
from functions.stage_executor.stops import Stops
from stratum.clock import utc_now
from stratum.config import Settings
from stratum.events import (
    CompensateRun,
    Envelope,
    ExecuteStage,
    NodeFailed,
    NodeStarted,
    NodeSucceeded,
    RunCancelled,
    RunCancelling,
    RunFailed,
    RunHeld,
    RunSucceeded,
    StageCompleted,
    StageFailed,
)
from stratum.executor import ExecutorConfig, NodeOutcome, StageOutcome, run_stage
from stratum.graph import ActionGraph
from stratum.graph.registry import GraphRegistry
from stratum.runs.cancel import CancelOrder
from stratum.runs.status import RunStatus
from stratum.runtime import Declaration, Dependencies, Inbound, run_key
from stratum.runtime.faults import crash_point
from stratum.runtime.publisher import Announcer
from stratum.store import CancellingError, RunChange, StageStart
from stratum.telemetry import metrics, tracing


@dataclass(frozen=True)
class StageCommand:
    """An `execute stage` command, and the tag its node events carry for this execution."""

    command: Envelope
    order: ExecuteStage
    tag: str


@dataclass(frozen=True)
class StageRun:
    """What the stage's nodes did, with what `begin_stage` read of the run; `result`
    None: the run was being cancelled, nothing ran (`executions` as stored then)."""

    run: dict[str, Any]
    capabilities: dict[str, Any]
    executions: dict[str, dict[str, Any]]
    # the graph the stage's end is decided with: the run's, each earlier node as it ran
    graph: ActionGraph
    result: StageOutcome | None
    lease: str
    # the node that ended last: written with the stage's result, in one transaction
    last: NodeOutcome | None
    # the run is being cancelled: who asked and why (heard while the stage ran, or read)
    cancel: CancelOrder | None = None


@dataclass(frozen=True)
class StageEnd:
    """The stage's result and what it does to the run, stored together; `ran` is what
    it was decided from (decided again if the run turns out to be cancelling)."""

    command: Envelope
    stage: int
    status: str
    events: list[Envelope]
    lease: str
    last_node: tuple[str, dict[str, Any], dict[str, Any]] | None
    step: core.RunStep
    ran: StageRun
    order: ExecuteStage
    tag: str


@dataclass
class NodeRecorder:
    """Records each node as it ends (DB, then its event), but the stage's last one, which
    is stored with the stage's result (`StageRun.last`)."""

    store: StageStore
    publisher: Announcer
    log: logging.Logger
    command: Envelope
    stage: int
    tag: str
    lease: str
    # the stage's node.started events, being announced: they go out before any node's end
    announcing: asyncio.Future[None]
    unrecorded: int
    last: list[NodeOutcome] = field(default_factory=list)

    async def __call__(self, outcome: NodeOutcome) -> None:
        command = self.command
        seconds = (outcome.finished_at - outcome.started_at).total_seconds()
        metrics.NODE_DURATION.labels(command.tenant, outcome.node_id, outcome.status).observe(
            seconds
        )
        self.log.log(
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
        self.unrecorded -= 1
        if self.unrecorded == 0:
            self.last.append(outcome)
            return
        node_record, event = core.finished(command, self.stage, outcome, self.tag)
        await self.store.finish_node(
            command.runid,
            outcome.node_id,
            node_record,
            outcome.outputs,
            [event],
            command.id,
            self.lease,
        )
        await self.announcing
        await self.publisher.publish(event)
        crash_point("stage-executor.node-recorded")  # siblings may still be running


class StageExecutorHandler:
    def __init__(self, dependencies: Dependencies) -> None:
        self.store: StageStore = dependencies.store
        self.graphs: GraphRegistry = dependencies.graph_registry()
        self.config: ExecutorConfig = dependencies.executor_config()
        self.publisher = dependencies.publisher
        self.log = dependencies.log
        self.stops = Stops()

    def hear(self, event: Envelope) -> None:
        """A run is being cancelled: stop its stage if this instance is running it."""
        if event.type == RunCancelling.TYPE:
            self.stops.stop(event.runid, CancelOrder.of(event.data))

    def parse(self, inbound: Inbound) -> StageCommand:
        command = Envelope.from_bytes(inbound.body)
        tag = core.execution_tag(
            command.id, inbound.headers.get("Nats-Msg-Id", ""), inbound.delivery
        )
        return StageCommand(command, command.payload(ExecuteStage), tag)

    async def load(self, event: StageCommand) -> StageRun:
        """Begin the stage and run its nodes: the state its end is decided from."""
        order = event.order
        with tracing.span(
            f"stage {order.stage}",
            {"stratum.stage": order.stage, "stratum.stage.nodes": len(order.nodes)},
        ) as span:
            with self.stops.watching(event.command.runid) as stop:
                ran = await self.run_nodes(event, stop)
            if ran.cancel is not None:
                tracing.failed(span, ran.cancel.error)
            elif ran.result is not None and ran.result.failed:
                tracing.failed(span, "a node failed")
            return ran

    async def run_nodes(self, event: StageCommand, stop: asyncio.Future[CancelOrder]) -> StageRun:
        command, stage, tag = event.command, event.order.stage, event.tag
        run_id = command.runid
        # one transaction checks the stage may start, marks it and its pending nodes
        # started under this execution's lease, and reads what they need; a stage that
        # already ended is stale
        lease = uuid.uuid4().hex
        every_start = core.started(command, stage, event.order.nodes, utc_now(), tag)
        preparing = asyncio.create_task(self.config.prepare_stage(run_id, stage, event.order.nodes))
        try:
            start = await self.store.begin_stage(
                run_id, stage, event.order.nodes, every_start, command.id, lease, command.resumption
            )
        except CancellingError:
            return await self.not_started(run_id)
        finally:
            await preparing  # the folders are there before a script starts
        started = [begun for begun in every_start if begun.data["node"] in start.todo]
        # announced while the scripts start (they are stored already); awaited before any
        # node's end is announced, so the bus keeps the order
        announcing = asyncio.ensure_future(self.publisher.publish_all(started))
        try:
            return await self.run_started(event, start, lease, announcing, stop)
        finally:
            await announcing

    async def not_started(self, run_id: str) -> StageRun:
        """The run is being cancelled: nothing runs; the state to stop the stage from."""
        run, executions, capabilities = await self.store.run_state(run_id)
        assert run is not None  # begin_stage just found it Cancelling
        graph = await self.graphs.as_ran(run["graph_version"], executions)
        cancel = CancelOrder.of(run.get("cancel")) or CancelOrder("?", "")
        return StageRun(run, capabilities, executions, graph, None, "", None, cancel)

    async def run_started(
        self,
        event: StageCommand,
        start: StageStart,
        lease: str,
        announcing: asyncio.Future[None],
        stop: asyncio.Future[CancelOrder],
    ) -> StageRun:
        command, stage, tag = event.command, event.order.stage, event.tag
        run_id = command.runid
        run, capabilities, todo, executions = start
        graph = await self.graphs.version(run["graph_version"])
        # what the stage's end decides from: each earlier node as it was declared when it
        # ran (a resume may have brought new definitions)
        as_ran = await self.graphs.as_ran(run["graph_version"], executions)

        nodes = [graph.nodes[node] for node in todo]
        payloads = {node.id: core.node_payload(run, node, capabilities) for node in nodes}
        first_attempts = {
            node.id: core.first_attempt(todo[node.id], node.retries.max) for node in nodes
        }
        recorder = NodeRecorder(
            self.store,
            self.publisher,
            self.log,
            command,
            stage,
            tag,
            lease,
            announcing,
            unrecorded=len(nodes),
        )
        metrics.STAGE_FANOUT.labels(command.tenant).observe(len(nodes))
        crash_point("stage-executor.nodes-starting")  # marked started, no script runs yet
        why = asyncio.get_running_loop().create_future()
        stop.add_done_callback(lambda heard: why.set_result(heard.result().error))
        result = await run_stage(
            nodes,
            payloads,
            graph.schemas,
            self.config.context(run_id, command.tenant, stage),
            on_node_done=recorder,
            first_attempts=first_attempts,
            credentials=self.config.credentials,
            stop=why,
        )
        last = recorder.last[0] if recorder.last else None
        cancel = stop.result() if stop.done() else None
        return StageRun(run, capabilities, executions, as_ran, result, lease, last, cancel)

    def decide(self, event: StageCommand, state: StageRun, now: datetime) -> StageEnd:
        return self.end_of(event.command, event.order, event.tag, state, now)

    def end_of(
        self, command: Envelope, order: ExecuteStage, tag: str, state: StageRun, now: datetime
    ) -> StageEnd:
        """The stage's end: its result, and what that does to the run."""
        stage = order.stage
        outcomes = state.result.nodes if state.result is not None else []
        executions = dict(state.executions)
        capabilities = dict(state.capabilities)
        for outcome in outcomes:
            executions[outcome.node_id] = {"stage": stage, "status": outcome.status}
            capabilities |= outcome.outputs
        events: list[Envelope] = []
        if state.cancel is not None:
            if state.result is None:  # nothing ran: the nodes a lost execution left running
                events = core.cancelled_nodes(command, stage, state.executions, state.cancel, now)
            statuses = {node: str(record.get("status")) for node, record in executions.items()}
            final = core.stopped_result(command, stage, order.nodes, statuses, state.cancel, now)
            step = core.after_cancel(final, executions, state.graph, state.cancel, now)
        else:
            final = core.stage_result(command, stage, order.nodes, outcomes, now)
            step = core.after_stage(
                final, state.run["plan"], executions, capabilities, state.graph, now
            )
        events += [final, *step.events]
        last_node = None
        if state.last is not None:
            node_record, node_event = core.finished(command, stage, state.last, tag)
            last_node = (state.last.node_id, node_record, state.last.outputs)
            events.insert(0, node_event)
        status = "Failed" if final.type == StageFailed.TYPE else "Succeeded"
        return StageEnd(
            command, stage, status, events, state.lease, last_node, step, state, order, tag
        )

    async def commit(self, decision: StageEnd) -> Sequence[Envelope]:
        if decision.ran.result is None:
            await self.stop_unrun(decision)
        else:
            try:
                await self.finish(decision)
            except CancellingError:  # cancelled while it ran, unheard: stop it now
                order = CancelOrder.of(await self.store.cancel_of(decision.command.runid))
                ran = dataclasses.replace(decision.ran, cancel=order or CancelOrder("?", ""))
                decision = self.end_of(
                    decision.command, decision.order, decision.tag, ran, utc_now()
                )
                await self.finish(decision)
        step = decision.step
        if step.kind == "succeed":
            self.log.info("run succeeded")
        elif step.kind == "hold":
            self.log.warning(
                f"run held at stage {decision.stage}: `stratum resume` runs it again from "
                "there, `stratum cancel` undoes it",
                extra={"error": step.error},
            )
        elif step.kind in ("fail", "cancel"):
            ended = "failed" if step.kind == "fail" else "stopped for a cancel"
            self.log.warning(
                f"run {ended} at stage {decision.stage}; "
                + (f"compensating {', '.join(step.undo)}" if step.undo else "nothing to undo"),
                extra={"error": step.error},
            )
        return decision.events

    async def finish(self, decision: StageEnd) -> None:
        await self.store.finish_stage(
            decision.command.runid,
            decision.stage,
            decision.status,
            decision.events,
            decision.command.id,
            lease=decision.lease,
            last_node=decision.last_node,
            then=run_change(decision.step),
        )

    async def stop_unrun(self, decision: StageEnd) -> None:
        """A stage that ran nothing because its run is being cancelled."""
        assert decision.step.error is not None
        await self.store.stop_stage(
            decision.command.runid,
            decision.stage,
            assignments=run_change(decision.step).assignments(),
            events=decision.events,
            cause=decision.command.id,
            error=decision.step.error,
            resumption=decision.command.resumption,
        )


def stage_concurrency(settings: Settings) -> int:
    return settings.stage_concurrency


DECLARATION = Declaration(
    name="stage-executor",
    handler=StageExecutorHandler,
    consumes=(ExecuteStage.TYPE,),
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
        RunCancelled.TYPE,
        RunHeld.TYPE,
    ),
    key=run_key,
    ends_runs=True,
    listens=(RunCancelling.TYPE,),
    concurrency=stage_concurrency,
    reads_graph=True,
    runs_scripts=True,
)


def run_change(step: core.RunStep) -> RunChange:
    """The store's form of what the stage's end does to the run."""
    if step.kind == "advance":
        return RunChange()
    if step.kind == "succeed":
        return RunChange(RunStatus.SUCCEEDED, outputs_hash=step.outputs_hash)
    if step.kind == "hold":
        return RunChange(RunStatus.HELD, error=step.error)
    if step.kind == "cancel":
        status = RunStatus.COMPENSATING if step.compensating else RunStatus.CANCELLED
        return RunChange(status, error=step.error, cancelling=True)
    status = RunStatus.COMPENSATING if step.compensating else RunStatus.FAILED
    return RunChange(status, error=step.error)
