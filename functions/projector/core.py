"""Read models, folded from events: the run list, run detail and event history.

`apply` is pure, idempotent and does not care in which order a run's events arrive, so
folding the stored events again (`replay`) gives exactly what live projection gave. Each
part of a view only ever moves forward: the run's, a node's and a stage's status by
(resumption, rank) — an event of a later resumption (`Envelope.resumption`; a resume
starts the next) replaces what the earlier one said, an earlier one's changes nothing, and
within one resumption a status only moves forward by rank. Nodes, stages, compensation
steps and resumes are keyed; times take the earliest. The history is one small row per
event (`history_item`), appended rather than rewritten inside the view, so a run's view
stays the same size as it grows.
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
    RunHeld,
    RunPlanned,
    RunRejected,
    RunRerun,
    RunResumed,
    RunSucceeded,
    StageCompleted,
    StageFailed,
)
from stratum.runs.cancel import CancelOrder
from stratum.runs.status import RunStatus

_NODE_RANK = {"pending": 0, "running": 1, "cancelled": 2, "failed": 3, "succeeded": 3}
_STAGE_RANK = {"pending": 0, "running": 1, "succeeded": 2, "failed": 2}


class NodeView(BaseModel):
    model_config = ConfigDict(frozen=True)
    node: str
    stage: int
    status: str = "pending"
    # the run's resumption of the node's latest execution (while pending: of its plan)
    resumption: int = 0
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
    # the run's resumption `status` is of
    resumption: int = 0


class CompensationStep(BaseModel):
    model_config = ConfigDict(frozen=True)
    order: int
    stage: int
    node: str
    status: str
    duration_ms: float
    error: str | None = None
    at: str


class HeldView(BaseModel):
    """Where a Held run waits for an operator: the stage that failed, its failed nodes."""

    model_config = ConfigDict(frozen=True)
    stage: int
    failed: list[str]
    error: str
    at: str


class ResumeView(BaseModel):
    """One resume of the run: who, why, and the plan it runs again with."""

    model_config = ConfigDict(frozen=True)
    resumption: int
    actor: str
    reason: str
    graph_version: str
    from_stage: int
    at: str


class RerunView(BaseModel):
    """A new run of this run's trigger event: which, how its trigger was decided, who
    asked."""

    model_config = ConfigDict(frozen=True)
    run: str
    status: str
    actor: str
    reason: str
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
    # how many times the run has been resumed: `status`, `error`, `held` and `finished`
    # are of that resumption
    resumption: int = 0
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
    # a Held run: where it waits (kept if it is then cancelled)
    held: HeldView | None = None
    # every resume, by resumption
    resumes: list[ResumeView] = []
    # a rerun: the run whose trigger event it runs again; and the reruns of this one
    rerun_of: str | None = None
    reruns: list[RerunView] = []
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


def history_item(event: Envelope) -> HistoryItem:
    """The event history's row for `event`."""
    return HistoryItem(id=event.id, time=iso(event.time), type=event.type, summary=_summary(event))


def apply(view: RunView | None, event: Envelope) -> RunView:
    """The view after `event` (applying an event twice changes nothing)."""
    at = iso(event.time)
    if view is None:
        view = RunView(run_id=event.runid, tenant=event.tenant, created_at=at)
    resumption = _resumption(event)
    if resumption > view.resumption:
        view = _next_resumption(view, resumption)
    update: dict[str, Any] = {"created_at": min(view.created_at, at)}
    # what the event says of the run's status, which only an event of its latest
    # resumption may change: the status it means, why it failed, whether it ended
    implied: RunStatus | None = None
    error: str | None = None
    outcome: dict[str, Any] = {}
    nodes = dict(view.nodes)
    stages = {s.index: s for s in view.stages}
    plan = _plan_resumption(view)
    kind = event.type

    if kind == RunAccepted.TYPE:
        p = event.payload(RunAccepted)
        update |= {
            "topic": p.topic,
            "actor": p.actor,
            "event_id": p.event_id,
            "inputs_hash": p.inputs_hash,
            "rerun_of": p.rerun_of or None,
            "created_at": at,
        }
    elif kind == RunPlanned.TYPE:
        planned = event.payload(RunPlanned)
        implied = RunStatus.PLANNED
        if _plan(nodes, stages, planned.stages, resumption, plan, done=0):
            update["graph_version"] = planned.graph_version
    elif kind == RunResumed.TYPE:
        resumed = event.payload(RunResumed)
        implied = RunStatus.RUNNING
        if _plan(nodes, stages, resumed.stages, resumption, plan, done=resumed.from_stage):
            update["graph_version"] = resumed.graph_version
        resumes = {r.resumption: r for r in view.resumes}
        resumes[resumption] = ResumeView(
            resumption=resumption,
            actor=resumed.actor,
            reason=resumed.reason,
            graph_version=resumed.graph_version,
            from_stage=resumed.from_stage,
            at=at,
        )
        update["resumes"] = [resumes[r] for r in sorted(resumes)]
    elif kind == RunRerun.TYPE:
        again = event.payload(RunRerun)
        known = {r.run: r for r in view.reruns}
        known[again.rerun] = RerunView(
            run=again.rerun, status=again.status, actor=again.actor, reason=again.reason, at=at
        )
        update["reruns"] = sorted(known.values(), key=lambda r: (r.at, r.run))
    elif kind == NodeStarted.TYPE:
        started = event.payload(NodeStarted)
        implied = RunStatus.RUNNING
        _node(nodes, started.node, started.stage, resumption, status="running", started_at=at)
        _stage(stages, started.stage, "running", resumption, plan)
    elif kind == NodeSucceeded.TYPE:
        ok = event.payload(NodeSucceeded)
        _node(
            nodes,
            ok.node,
            ok.stage,
            resumption,
            status="succeeded",
            attempts=ok.attempts,
            finished_at=at,
            duration_ms=ok.duration_ms,
            bundle=ok.bundle,
            outputs_hash=ok.outputs_hash,
        )
    elif kind == NodeFailed.TYPE:
        bad = event.payload(NodeFailed)
        _node(
            nodes,
            bad.node,
            bad.stage,
            resumption,
            status="cancelled" if bad.cancelled else "failed",
            attempts=bad.attempts,
            finished_at=at,
            duration_ms=bad.duration_ms,
            error=bad.error,
            bundle=bad.bundle,
        )
    elif kind == StageCompleted.TYPE:
        _stage(stages, event.payload(StageCompleted).stage, "succeeded", resumption, plan)
    elif kind == StageFailed.TYPE:
        _stage(stages, event.payload(StageFailed).stage, "failed", resumption, plan)
    elif kind == RunHeld.TYPE:
        hold = event.payload(RunHeld)
        implied, error = RunStatus.HELD, hold.error
        outcome["held"] = HeldView(stage=hold.stage, failed=hold.failed, error=hold.error, at=at)
        _stage(stages, hold.stage, "failed", resumption, plan)
    elif kind == RunSucceeded.TYPE:
        implied = RunStatus.SUCCEEDED
        update["outputs_hash"] = event.payload(RunSucceeded).outputs_hash
        outcome |= {"finished": True, "finished_at": at}
    elif kind == RunFailed.TYPE:
        failure = event.payload(RunFailed)
        implied, error = RunStatus.FAILED, failure.error
        if not failure.compensating:  # nothing to undo: no saga follows, the run ends here
            outcome |= {"finished": True, "finished_at": at}
    elif kind == CompensateRun.TYPE:
        implied = RunStatus.COMPENSATING
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
        implied = RunStatus.COMPENSATION_FAILED if failed else RunStatus.COMPENSATED
        outcome |= {"finished": True, "finished_at": at}
    elif kind == RunCancelling.TYPE:
        asked = event.payload(RunCancelling)
        implied = RunStatus.CANCELLING
        update |= {"cancelled_by": asked.actor, "cancel_reason": asked.reason}
    elif kind == RunCancelled.TYPE:
        ended_by = event.payload(RunCancelled)
        implied = RunStatus.COMPENSATION_FAILED if ended_by.failed else RunStatus.CANCELLED
        error = CancelOrder(ended_by.actor, ended_by.reason).error
        update |= {"cancelled_by": ended_by.actor, "cancel_reason": ended_by.reason}
        outcome |= {"finished": True, "finished_at": at}
    elif kind == RunRejected.TYPE:
        implied, error = RunStatus.FAILED, event.payload(RunRejected).error
        outcome |= {"finished": True, "finished_at": at}
    elif kind == RunDenied.TYPE:  # the run's only event: it never started
        denied = event.payload(RunDenied)
        implied, error = RunStatus.DENIED, denied.reason
        update |= {
            "topic": denied.topic,
            "actor": denied.actor,
            "event_id": denied.event_id,
            "inputs_hash": denied.inputs_hash,
            "policy_ids": denied.policy_ids,
            "rerun_of": denied.rerun_of or None,
            "created_at": at,
        }
        outcome |= {"finished": True, "finished_at": at}

    update |= {"nodes": nodes, "stages": [stages[i] for i in sorted(stages)]}
    if resumption == view.resumption:  # an earlier resumption's outcome is stale
        update |= outcome
        if implied is not None:
            update["status"] = _forward(view.status, implied)
            if error is not None and (view.error is None or _at_least(implied, view.status)):
                update["error"] = error
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


def _resumption(event: Envelope) -> int:
    """The run's resumption `event` is of: a resume's own event starts the one it names,
    whatever its envelope inherited from its cause."""
    if event.type == RunResumed.TYPE:
        return max(event.resumption, event.payload(RunResumed).resumption)
    return event.resumption


def _next_resumption(view: RunView, resumption: int) -> RunView:
    """The view as a later resumption starts: a resumed run is running, its hold, error
    and end (if any) were the earlier resumption's."""
    return view.model_copy(
        update={
            "resumption": resumption,
            "status": RunStatus.RUNNING.value,
            "error": None,
            "held": None,
            "finished": False,
            "finished_at": None,
            "duration_ms": None,
        }
    )


def _at_least(status: RunStatus, current: str) -> bool:
    return status.rank >= RunStatus(current).rank


def _plan_resumption(view: RunView) -> int:
    """The resumption of the newest plan seen: the last resume's (0: `run.planned`'s)."""
    return max((r.resumption for r in view.resumes), default=0)


def _plan(
    nodes: dict[str, NodeView],
    stages: dict[int, StageView],
    planned: list[list[str]],
    resumption: int,
    newest: int,
    *,
    done: int,
) -> bool:
    """Fold a plan of `resumption` (`run.planned`'s, 0, or a resume's) into `nodes` and
    `stages`: its nodes are pending unless something happened to them, its stages pending
    (the first `done` succeeded) unless an event of the resumption moved them on. Only the
    newest plan (`newest`: the resumption of the newest seen before) decides which stages
    the run has and their nodes; whether this is it is returned (its graph version is the
    run's then). A pending node takes the stage the newest plan naming it gives."""
    for index, names in enumerate(planned):
        for name in names:
            known = nodes.get(name)
            if known is None or (known.status == "pending" and resumption > known.resumption):
                nodes[name] = NodeView(node=name, stage=index, resumption=resumption)
    is_newest = resumption >= newest
    if is_newest:
        for index in [i for i in stages if i >= len(planned)]:  # not in this plan
            if stages[index].resumption < resumption:
                del stages[index]  # an older plan's
            else:  # this resumption's events name it: kept
                stages[index] = stages[index].model_copy(update={"nodes": []})
        for index, names in enumerate(planned):
            stage = stages.get(index) or StageView(index=index, nodes=[], resumption=resumption)
            stages[index] = stage.model_copy(update={"nodes": names})
    for index in range(len(planned)):
        status = "succeeded" if index < done else "pending"
        _stage(stages, index, status, resumption, max(newest, resumption))
    return is_newest


def _node(
    nodes: dict[str, NodeView], name: str, stage: int, resumption: int, **changes: Any
) -> None:
    """Fold a node event of `resumption` saying `changes` into `nodes`: a later
    resumption's execution replaces the earlier one (and a pending node takes any event);
    within one, the status moves forward by rank and a lower-ranked event only fills in
    what is missing; an earlier resumption's event is stale."""
    old = nodes.get(name)
    if old is None or old.status == "pending" or resumption > old.resumption:
        nodes[name] = NodeView(node=name, stage=stage, resumption=resumption, **changes)
    elif resumption == old.resumption:
        if _NODE_RANK[changes["status"]] < _NODE_RANK[old.status]:
            changes = {
                k: v for k, v in changes.items() if k != "status" and getattr(old, k) is None
            }
        nodes[name] = old.model_copy(update=changes)


def _stage(
    stages: dict[int, StageView], index: int, status: str, resumption: int, plan: int
) -> None:
    """Fold `status` of stage `index`, from `resumption`, into `stages`: by (resumption,
    rank) like a node's. A stage not in the plan yet is created, unless a newer plan
    (`plan`: its resumption) is known without it: then it was an older plan's."""
    old = stages.get(index)
    if old is None:
        if resumption >= plan:
            stages[index] = StageView(index=index, nodes=[], status=status, resumption=resumption)
    elif resumption > old.resumption or (
        resumption == old.resumption and _STAGE_RANK[status] > _STAGE_RANK[old.status]
    ):
        stages[index] = old.model_copy(update={"status": status, "resumption": resumption})


def _ms_between(start: str, end: str) -> float:
    from datetime import datetime

    fmt = "%Y-%m-%dT%H:%M:%S.%fZ"
    return (datetime.strptime(end, fmt) - datetime.strptime(start, fmt)).total_seconds() * 1000


def _summary(event: Envelope) -> str:
    data = event.data
    kind = event.type.removeprefix("stratum.")
    if event.type == RunHeld.TYPE:  # held at stage N: why
        return f"{kind} {data['stage']}: {data['error']}"
    if event.type == RunResumed.TYPE:  # runs again from stage N: why
        return f"{kind} {data['from_stage']}" + (f": {data['reason']}" if data["reason"] else "")
    if event.type == RunRerun.TYPE:  # run again as another run
        return f"{kind} as {data['rerun']} ({data['status']})"
    if "node" in data:
        return f"{kind} {data['node']}" + (f": {data['error']}" if data.get("error") else "")
    if "stage" in data:
        return f"{kind} {data['stage']}"
    if "error" in data:
        return f"{kind}: {data['error']}"
    if "reason" in data:
        return f"{kind}: {data['reason']}"
    return kind
