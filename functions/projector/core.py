"""Read models, folded from events: the run list, run detail and event history.

`apply` is pure, idempotent and does not care in which order a run's events arrive
(statuses only move forward by rank, nodes and compensation steps are keyed, times take
the earliest), so folding the stored events again (`replay`) gives exactly what live
projection gave. The history is one small row per event (`history_item`), appended rather
than rewritten inside the view, so a run's view stays the same size as it grows.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ConfigDict

from stratum.clock import iso
from stratum.events import (
    CompensateRun,
    CompensationRecorded,
    Envelope,
    NodeFailed,
    NodeStarted,
    NodeSucceeded,
    RunAccepted,
    RunCancelled,
    RunCancelling,
    RunCompensated,
    RunDenied,
    RunFailed,
    RunPlanned,
    RunRejected,
    RunSucceeded,
    StageCompleted,
    StageFailed,
)
from stratum.runs.cancel import CancelOrder
from stratum.runs.status import RunStatus

_NODE_RANK = {"pending": 0, "running": 1, "cancelled": 2, "failed": 3, "succeeded": 3}


class NodeView(BaseModel):
    model_config = ConfigDict(frozen=True)
    node: str
    stage: int
    status: str = "pending"
    attempts: int = 0
    started_at: str | None = None
    finished_at: str | None = None
    duration_ms: float | None = None
    error: str | None = None
    bundle: str | None = None
    outputs_hash: str | None = None


class StageView(BaseModel):
    model_config = ConfigDict(frozen=True)
    index: int
    nodes: list[str]
    status: str = "pending"


class CompensationStep(BaseModel):
    model_config = ConfigDict(frozen=True)
    order: int
    stage: int
    node: str
    status: str
    duration_ms: float
    error: str | None = None
    at: str


class HistoryItem(BaseModel):
    model_config = ConfigDict(frozen=True)
    id: str
    time: str
    type: str
    summary: str


class RunView(BaseModel):
    """Everything `stratum show` prints about a run."""

    model_config = ConfigDict(frozen=True)

    run_id: str
    tenant: str
    status: str = RunStatus.ACCEPTED.value
    finished: bool = False
    topic: str | None = None
    actor: str | None = None
    event_id: str | None = None
    inputs_hash: str | None = None
    outputs_hash: str | None = None
    graph_version: str | None = None
    error: str | None = None
    # a Denied run: the policies that decided (`error` says why)
    policy_ids: list[str] = []
    # a cancelled run: who cancelled it and why
    cancelled_by: str | None = None
    cancel_reason: str | None = None
    # the OpenTelemetry trace the run's hops joined (empty when nothing traced it)
    trace_id: str | None = None
    created_at: str
    finished_at: str | None = None
    duration_ms: float | None = None
    stages: list[StageView] = []
    nodes: dict[str, NodeView] = {}
    compensation: list[CompensationStep] = []


def _forward(current: str, candidate: RunStatus) -> str:
    return candidate.value if candidate.rank > RunStatus(current).rank else current


def _node(view: RunView, name: str, stage: int, **changes: Any) -> dict[str, NodeView]:
    nodes = dict(view.nodes)
    old = nodes.get(name) or NodeView(node=name, stage=stage)
    new_status = changes.get("status", old.status)
    if _NODE_RANK[new_status] < _NODE_RANK[old.status]:
        changes = {
            k: v for k, v in changes.items() if k not in ("status",) and getattr(old, k) is None
        }
    nodes[name] = old.model_copy(update=changes)
    return nodes


def history_item(event: Envelope) -> HistoryItem:
    """The event history's row for `event`."""
    return HistoryItem(id=event.id, time=iso(event.time), type=event.type, summary=_summary(event))


def apply(view: RunView | None, event: Envelope) -> RunView:
    """The view after `event` (applying an event twice changes nothing)."""
    at = iso(event.time)
    if view is None:
        view = RunView(run_id=event.runid, tenant=event.tenant, created_at=at)
    update: dict[str, Any] = {"created_at": min(view.created_at, at)}
    status = view.status
    kind = event.type

    if kind == RunAccepted.TYPE:
        p = event.payload(RunAccepted)
        update |= {
            "topic": p.topic,
            "actor": p.actor,
            "event_id": p.event_id,
            "inputs_hash": p.inputs_hash,
            "created_at": at,
        }
    elif kind == RunPlanned.TYPE:
        planned = event.payload(RunPlanned)
        status = _forward(status, RunStatus.PLANNED)
        known = {s.index: s for s in view.stages}
        update["stages"] = [
            known.get(i, StageView(index=i, nodes=nodes)).model_copy(update={"nodes": nodes})
            for i, nodes in enumerate(planned.stages)
        ]
        update["graph_version"] = planned.graph_version
        nodes = dict(view.nodes)
        for index, names in enumerate(planned.stages):
            for name in names:
                nodes.setdefault(name, NodeView(node=name, stage=index))
        update["nodes"] = nodes
    elif kind == NodeStarted.TYPE:
        started = event.payload(NodeStarted)
        status = _forward(status, RunStatus.RUNNING)
        update["nodes"] = _node(view, started.node, started.stage, status="running", started_at=at)
        update["stages"] = _stage_status(view, started.stage, "running")
    elif kind == NodeSucceeded.TYPE:
        ok = event.payload(NodeSucceeded)
        update["nodes"] = _node(
            view,
            ok.node,
            ok.stage,
            status="succeeded",
            attempts=ok.attempts,
            finished_at=at,
            duration_ms=ok.duration_ms,
            bundle=ok.bundle,
            outputs_hash=ok.outputs_hash,
        )
    elif kind == NodeFailed.TYPE:
        bad = event.payload(NodeFailed)
        update["nodes"] = _node(
            view,
            bad.node,
            bad.stage,
            status="cancelled" if bad.cancelled else "failed",
            attempts=bad.attempts,
            finished_at=at,
            duration_ms=bad.duration_ms,
            error=bad.error,
            bundle=bad.bundle,
        )
    elif kind == StageCompleted.TYPE:
        update["stages"] = _stage_status(view, event.payload(StageCompleted).stage, "succeeded")
    elif kind == StageFailed.TYPE:
        update["stages"] = _stage_status(view, event.payload(StageFailed).stage, "failed")
    elif kind == RunSucceeded.TYPE:
        status = _forward(status, RunStatus.SUCCEEDED)
        update |= {
            "outputs_hash": event.payload(RunSucceeded).outputs_hash,
            "finished": True,
            "finished_at": at,
        }
    elif kind == RunFailed.TYPE:
        failure = event.payload(RunFailed)
        status = _forward(status, RunStatus.FAILED)
        update["error"] = failure.error
        if not failure.compensating:  # nothing to undo: no saga follows, the run ends here
            update |= {"finished": True, "finished_at": at}
    elif kind == CompensateRun.TYPE:
        status = _forward(status, RunStatus.COMPENSATING)
    elif kind == CompensationRecorded.TYPE:
        s = event.payload(CompensationRecorded)
        steps = [c for c in view.compensation if c.node != s.node]
        steps.append(
            CompensationStep(
                order=s.order,
                stage=s.stage,
                node=s.node,
                status=s.status,
                duration_ms=s.duration_ms,
                error=s.error,
                at=at,
            )
        )
        update["compensation"] = sorted(steps, key=lambda c: c.order)
    elif kind == RunCompensated.TYPE:
        failed = bool(event.payload(RunCompensated).failed)
        ended = RunStatus.COMPENSATION_FAILED if failed else RunStatus.COMPENSATED
        status = _forward(status, ended)
        update |= {"finished": True, "finished_at": at}
    elif kind == RunCancelling.TYPE:
        asked = event.payload(RunCancelling)
        status = _forward(status, RunStatus.CANCELLING)
        update |= {"cancelled_by": asked.actor, "cancel_reason": asked.reason}
    elif kind == RunCancelled.TYPE:
        ended_by = event.payload(RunCancelled)
        final = RunStatus.COMPENSATION_FAILED if ended_by.failed else RunStatus.CANCELLED
        status = _forward(status, final)
        update |= {
            "cancelled_by": ended_by.actor,
            "cancel_reason": ended_by.reason,
            "error": CancelOrder(ended_by.actor, ended_by.reason).error,
            "finished": True,
            "finished_at": at,
        }
    elif kind == RunRejected.TYPE:
        status = _forward(status, RunStatus.FAILED)
        update |= {"error": event.payload(RunRejected).error, "finished": True, "finished_at": at}
    elif kind == RunDenied.TYPE:  # the run's only event: it never started
        denied = event.payload(RunDenied)
        status = _forward(status, RunStatus.DENIED)
        update |= {
            "topic": denied.topic,
            "actor": denied.actor,
            "event_id": denied.event_id,
            "inputs_hash": denied.inputs_hash,
            "error": denied.reason,
            "policy_ids": denied.policy_ids,
            "created_at": at,
            "finished": True,
            "finished_at": at,
        }
    update["status"] = status
    view = view.model_copy(update=update)
    if view.finished_at is not None:
        view = view.model_copy(
            update={"duration_ms": _ms_between(view.created_at, view.finished_at)}
        )
    return view


def replay(events: Iterable[Envelope]) -> tuple[dict[str, RunView], list[tuple[str, HistoryItem]]]:
    """Every run's view and every history row (with its run id), folded from scratch."""
    views: dict[str, RunView] = {}
    history: list[tuple[str, HistoryItem]] = []
    for event in events:
        views[event.runid] = apply(views.get(event.runid), event)
        history.append((event.runid, history_item(event)))
    return views, history


def _stage_status(view: RunView, index: int, status: str) -> list[StageView]:
    """Stages with `index` moved forward to `status` (created if the plan is not seen yet)."""
    order = {"pending": 0, "running": 1, "succeeded": 2, "failed": 2}
    stages = {s.index: s for s in view.stages}
    current = stages.get(index) or StageView(index=index, nodes=[])
    if order[status] > order[current.status]:
        current = current.model_copy(update={"status": status})
    stages[index] = current
    return [stages[i] for i in sorted(stages)]


def _ms_between(start: str, end: str) -> float:
    from datetime import datetime

    fmt = "%Y-%m-%dT%H:%M:%S.%fZ"
    return (datetime.strptime(end, fmt) - datetime.strptime(start, fmt)).total_seconds() * 1000


def _summary(event: Envelope) -> str:
    data = event.data
    kind = event.type.removeprefix("stratum.")
    if "node" in data:
        return f"{kind} {data['node']}" + (f": {data['error']}" if data.get("error") else "")
    if "stage" in data:
        return f"{kind} {data['stage']}"
    if "error" in data:
        return f"{kind}: {data['error']}"
    if "reason" in data:
        return f"{kind}: {data['reason']}"
    return kind
