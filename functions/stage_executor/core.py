"""The stage executor's pure parts: what each node reads, what is recorded of it, and
what a stage's end does to its run (the next stage, the run's success, its failure, or
its hold; for a run being cancelled, its compensation or its end, Cancelled)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import orjson

from stratum.clock import iso
from stratum.events import (
    CompensateRun,
    Envelope,
    ExecuteStage,
    NodeFailed,
    NodeStarted,
    NodeSucceeded,
    Payload,
    RunCancelled,
    RunFailed,
    RunHeld,
    RunSucceeded,
    StageCompleted,
    StageFailed,
    follow,
)
from stratum.executor import NodeOutcome
from stratum.graph import ActionGraph, ActionNode
from stratum.runs.cancel import CancelOrder
from stratum.runs.saga import undoable

SOURCE = "stratum/stage-executor"


def _emit(payload: Payload, cause: Envelope, now: datetime, discriminator: str = "") -> Envelope:
    return follow(payload, cause, source=SOURCE, now=now, discriminator=discriminator)


def node_payload(
    run: Mapping[str, Any], node: ActionNode, capabilities: Mapping[str, Any]
) -> dict[str, Any]:
    """What the script reads on stdin: the run, the triggering event's data, its inputs."""
    return {
        "run": {"id": run["_id"], "tenant": run["tenant"], "topic": run["topic"]},
        "event": run.get("event_data") or {},
        "inputs": {name: capabilities[name] for name in node.consumes if name in capabilities},
    }


def execution_tag(event_id: str, message_id: str, delivery: int) -> str:
    """What tells apart the events of two executions of one stage command: a redelivery
    (the first holder died or stalled) or a re-publication of the command (stuck-run
    watchdog, dead-letter re-drive) runs its unfinished nodes again, and their new events
    must not be dropped as duplicates of the first execution's."""
    if delivery <= 1 and message_id in ("", event_id):
        return ""
    if message_id in ("", event_id):
        return f"@{delivery}"
    return f"@{delivery}.{hashlib.sha256(message_id.encode()).hexdigest()[:12]}"


def first_attempt(executions: int, retries: int) -> int:
    """The number of a node's first attempt in its `executions`-th execution: each
    execution gets its own block of attempt numbers, so bundles and idempotency keys of
    two executions never collide."""
    return (max(executions, 1) - 1) * (retries + 1) + 1


def started(
    command: Envelope, stage: int, nodes: list[str], now: datetime, tag: str = ""
) -> list[Envelope]:
    return [_emit(NodeStarted(stage=stage, node=node), command, now, node + tag) for node in nodes]


def finished(
    command: Envelope, stage: int, outcome: NodeOutcome, tag: str = ""
) -> tuple[dict[str, Any], Envelope]:
    """The node_exec record and the event for a node's outcome."""
    duration_ms = (outcome.finished_at - outcome.started_at).total_seconds() * 1000
    last = outcome.attempts[-1] if outcome.attempts else None
    bundle = str(last.bundle) if last else None
    record = {
        "status": outcome.status,
        "stage": stage,
        "started_at": iso(outcome.started_at),
        "finished_at": iso(outcome.finished_at),
        "duration_ms": duration_ms,
        "error": outcome.error,
        "outputs_hash": outcome.outputs_hash,
        "bundle": bundle,
        "attempts": [
            {
                "attempt": a.attempt,
                "status": a.status,
                "exit_code": a.exit_code,
                "signal": a.signal,
                "timed_out": a.timed_out,
                "error": a.error,
                "retryable": a.retryable,
                "duration_ms": a.duration_ms,
                "bundle": str(a.bundle),
                "idempotency_key": a.idempotency_key,
                # the id of the credential its secrets came under (audit), never a value
                "credential_lease": a.credential_lease,
            }
            for a in outcome.attempts
        ],
    }
    payload: Payload
    if outcome.status == "succeeded":
        payload = NodeSucceeded(
            stage=stage,
            node=outcome.node_id,
            attempts=len(outcome.attempts),
            duration_ms=duration_ms,
            outputs_hash=outcome.outputs_hash,
            bundle=bundle or "",
        )
    else:
        payload = NodeFailed(
            stage=stage,
            node=outcome.node_id,
            attempts=len(outcome.attempts),
            duration_ms=duration_ms,
            error=outcome.error or outcome.status,
            cancelled=outcome.status == "cancelled",
            bundle=bundle,
        )
    return record, _emit(payload, command, outcome.finished_at, outcome.node_id + tag)


def stage_result(
    command: Envelope, stage: int, nodes: list[str], outcomes: list[NodeOutcome], now: datetime
) -> Envelope:
    """StageCompleted, or StageFailed naming the node(s) whose failure ended it."""
    failed = [o for o in outcomes if o.status == "failed"]
    if not failed:
        return _emit(StageCompleted(stage=stage, nodes=nodes), command, now)
    error = "; ".join(o.error or f"node {o.node_id}: failed" for o in failed)
    return _emit(
        StageFailed(stage=stage, failed=[o.node_id for o in failed], error=error), command, now
    )


def stopped_result(
    command: Envelope,
    stage: int,
    nodes: Sequence[str],
    statuses: Mapping[str, str],
    order: CancelOrder,
    now: datetime,
) -> Envelope:
    """StageFailed for a stage stopped because its run is being cancelled: it names every
    node of the stage that did not succeed (`statuses`, node -> status)."""
    failed = [node for node in nodes if statuses.get(node) != "succeeded"]
    return _emit(StageFailed(stage=stage, failed=failed, error=order.error), command, now)


def cancelled_nodes(
    command: Envelope,
    stage: int,
    executions: Mapping[str, Mapping[str, Any]],
    order: CancelOrder,
    now: datetime,
) -> list[Envelope]:
    """NodeFailed (cancelled) for the stage's nodes an execution that is gone left
    `running`: the stop ends them (`Stages.stop_stage` records them so)."""
    return [
        _emit(
            NodeFailed(
                stage=stage,
                node=node,
                attempts=0,
                duration_ms=0.0,
                error=f"node {node}: cancelled: {order.error}",
                cancelled=True,
            ),
            command,
            now,
            node + "@stopped",
        )
        for node, record in sorted(executions.items())
        if record.get("status") == "running" and int(record.get("stage", -1)) == stage
    ]


@dataclass(frozen=True)
class RunStep:
    """What a stage's end does to its run, stored in the transaction that records the
    stage's result: `advance` to the next stage, `succeed` (the last stage completed),
    `fail` (Compensating when something that succeeded can be undone, else Failed),
    `hold` (a failed node declares `on_failure = "hold"`: Held, nothing undone), or
    `cancel` (the run is being cancelled: Compensating likewise, else Cancelled). The
    `events` announce it, after the stage's result."""

    kind: Literal["advance", "succeed", "fail", "hold", "cancel"]
    events: tuple[Envelope, ...]
    outputs_hash: str | None = None
    error: str | None = None
    undo: tuple[str, ...] = ()  # what the saga will undo, in order

    @property
    def compensating(self) -> bool:
        return bool(self.undo)


def after_stage(
    result: Envelope,
    plan: Sequence[Sequence[str]],
    executions: Mapping[str, Mapping[str, Any]],
    capabilities: Mapping[str, Any],
    graph: ActionGraph,
    now: datetime,
) -> RunStep:
    """The run's next step after `result` (StageCompleted or StageFailed).

    `executions` are the run's node records with this stage's outcomes in; `capabilities`
    every value the run has produced, this stage's included. The events derive their ids
    from `result`, so a redelivery that decides again announces the same events.
    """
    if result.type == StageFailed.TYPE:
        failure = result.payload(StageFailed)
        if holds(failure.failed, graph):
            held = RunHeld(stage=failure.stage, failed=failure.failed, error=failure.error)
            return RunStep("hold", (_emit(held, result, now),), error=failure.error)
        to_undo = undoable(executions, graph)
        announced = RunFailed(stage=failure.stage, error=failure.error, compensating=bool(to_undo))
        events = [_emit(announced, result, now)]
        if to_undo:
            events.append(_emit(CompensateRun(failed_stage=failure.stage), result, now))
        return RunStep("fail", tuple(events), error=failure.error, undo=tuple(to_undo))
    following = result.payload(StageCompleted).stage + 1
    if following < len(plan):
        order = ExecuteStage(stage=following, nodes=list(plan[following]))
        return RunStep("advance", (_emit(order, result, now, str(following)),))
    digest = outputs_hash(capabilities)
    return RunStep(
        "succeed", (_emit(RunSucceeded(outputs_hash=digest), result, now),), outputs_hash=digest
    )


def holds(failed: Sequence[str], graph: ActionGraph) -> bool:
    """Whether a stage that failed in `failed` holds its run rather than undoing it: one
    of those nodes says so (a person looks before anything is undone)."""
    return any(node in graph.nodes and graph.nodes[node].on_failure == "hold" for node in failed)


def after_cancel(
    result: Envelope,
    executions: Mapping[str, Mapping[str, Any]],
    graph: ActionGraph,
    order: CancelOrder,
    now: datetime,
) -> RunStep:
    """The run's next step once its stage stopped for a cancel (`result`, the stage's
    StageFailed or StageCompleted): what succeeded is undone as after a failure, then
    the saga ends it Cancelled; with nothing to undo it ends Cancelled here."""
    stage = int(result.data["stage"])
    to_undo = undoable(executions, graph)
    ending: Payload
    if to_undo:
        ending = CompensateRun(failed_stage=stage)
    else:
        ending = RunCancelled(actor=order.actor, reason=order.reason)
    return RunStep("cancel", (_emit(ending, result, now),), error=order.error, undo=tuple(to_undo))


def outputs_hash(capabilities: Mapping[str, Any]) -> str:
    """One hash over everything the run produced (capability name -> value)."""
    return hashlib.sha256(orjson.dumps(dict(capabilities), option=orjson.OPT_SORT_KEYS)).hexdigest()
