"""The planner's decisions, pure: what a run's next step is after each event, and what
an operator's cancel or resume does to a run as it stands."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from stratum.clock import iso
from stratum.errors import PlanError
from stratum.events import (
    CancelRun,
    CompensateRun,
    Envelope,
    ExecuteStage,
    Payload,
    ResumeRun,
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
    emit,
    follow,
)
from stratum.graph import ActionGraph, capability_edges, plan
from stratum.runs.cancel import CancelOrder
from stratum.runs.status import RunStatus

SOURCE = "stratum/planner"


# (from stage, to stage, capabilities handed over): stored as graph relations
Link = tuple[int, int, list[str]]


@dataclass(frozen=True)
class Planned:
    graph_version: str
    stages: tuple[tuple[str, ...], ...]
    links: tuple[Link, ...]
    events: list[Envelope] = field(default_factory=list)


@dataclass(frozen=True)
class Rejected:
    error: str
    events: list[Envelope] = field(default_factory=list)


def _emit(
    payload: Payload,
    cause: Envelope,
    now: datetime,
    discriminator: str = "",
    resumption: int | None = None,
) -> Envelope:
    return follow(
        payload, cause, source=SOURCE, now=now, discriminator=discriminator, resumption=resumption
    )


def on_accepted(
    accepted: Envelope,
    topic: str,
    graph: ActionGraph | None,
    graph_error: str | None,
    now: datetime,
) -> Planned | Rejected:
    """Plan the run with the graph in force, or reject it with a one-line reason."""
    if graph is None:
        error = f"no valid workflow graph is loaded: {graph_error or 'no definitions'}"
        return Rejected(error, [_emit(RunRejected(error=error), accepted, now)])
    try:
        stages, links = staged(graph, topic)
    except PlanError as problem:
        return Rejected(str(problem), [_emit(RunRejected(error=str(problem)), accepted, now)])
    events = [
        _emit(RunPlanned(graph_version=graph.version, stages=stages), accepted, now),
        _emit(ExecuteStage(stage=0, nodes=stages[0]), accepted, now, "0"),
    ]
    return Planned(graph.version, tuple(tuple(stage) for stage in stages), links, events)


def staged(graph: ActionGraph, topic: str) -> tuple[list[list[str]], tuple[Link, ...]]:
    """The stages `topic` runs in with `graph`, and the capabilities each stage hands
    to a later one; PlanError if it cannot be planned."""
    chosen = plan(graph, topic)
    stage_of = {node: index for index, stage in enumerate(chosen.stages) for node in stage}
    flows: defaultdict[tuple[int, int], set[str]] = defaultdict(set)
    for edge in capability_edges(graph, chosen):
        flows[(stage_of[edge.producer], stage_of[edge.consumer])].add(edge.capability)
    links = tuple((src, dst, sorted(caps)) for (src, dst), caps in sorted(flows.items()))
    return [list(stage) for stage in chosen.stages], links


def ends_run(event: Envelope) -> bool:
    """Whether `event` ends its run (so a queued run of its tenant may start): a
    `run.succeeded`, a `run.compensated`, a `run.cancelled`, or a `run.failed` that no
    saga follows."""
    if event.type == RunFailed.TYPE:
        return not event.payload(RunFailed).compensating
    return event.type in (RunSucceeded.TYPE, RunCompensated.TYPE, RunCancelled.TYPE)


CancelOutcome = Literal["cancelling", "compensating", "cancelled", "ignored", "repeat"]


@dataclass(frozen=True)
class Cancel:
    """What a cancel request does to its run, seen in status `seen`: `cancelling` (a
    stage is running or about to: the stage executor stops it), `compensating` (it was
    held: the saga undoes it), `cancelled` (nothing had started, or a held run had
    nothing to undo: the run ends here), `ignored` (it had ended, or is being stopped or undone
    already: only the request is kept), `repeat` (this request was applied before).
    `entry` is the request as the run keeps it (`interventions`)."""

    outcome: CancelOutcome
    seen: str
    entry: dict[str, Any]
    events: list[Envelope] = field(default_factory=list)


def allowed_entry(
    command: Envelope, action: str, order: CancelRun | ResumeRun, now: datetime
) -> dict[str, Any]:
    """An allowed request as the run keeps it (`interventions`); its outcome is added."""
    return {
        "request": command.id,
        "action": action,
        "actor": order.actor,
        "reason": order.reason,
        "decision": "allow",
        "policy_ids": order.policy_ids,
        "at": iso(now),
    }


def seen_before(command: Envelope, run: Mapping[str, Any]) -> bool:
    """Whether this request was applied (or kept as ignored) before: a repeat only
    re-announces what it caused, and is counted once."""
    return command.id in {i.get("request") for i in run.get("interventions") or []}


def on_cancel(
    command: Envelope,
    run: Mapping[str, Any],
    now: datetime,
    undo: Sequence[str] = (),
) -> Cancel:
    """Decide a cancel request (`stratum.run.cancel`, authorized already) for `run` as
    stored. A queued run (or one not yet planned) ends Cancelled at once, having run
    nothing; a planned or running one becomes Cancelling; a held one (nothing runs) is
    handed to the saga when something it did can be undone (`undo`, in order), else it
    ends Cancelled."""
    order = command.payload(CancelRun)
    status = str(run.get("status") or "")
    # the run's resumption as stored (the request's may be older: it moved since)
    era = int(run.get("resumptions") or 0)
    entry = allowed_entry(command, "cancel", order, now)
    if seen_before(command, run):
        return Cancel("repeat", status, entry)
    if status == RunStatus.ACCEPTED:
        error = CancelOrder(order.actor, order.reason).error
        ended = RunCancelled(actor=order.actor, reason=order.reason)
        return Cancel(
            "cancelled",
            status,
            entry | {"outcome": "cancelled", "error": error},
            [_emit(ended, command, now, resumption=era)],
        )
    if status == RunStatus.HELD:
        ended = RunCancelled(actor=order.actor, reason=order.reason)
        stopping = RunCancelling(
            actor=order.actor, reason=order.reason, policy_ids=order.policy_ids
        )
        entry["error"] = CancelOrder(order.actor, order.reason).error
        if not undo:
            return Cancel(
                "cancelled",
                status,
                entry | {"outcome": "cancelled"},
                [
                    _emit(stopping, command, now, resumption=era),
                    _emit(ended, command, now, resumption=era),
                ],
            )
        held_stage = int((run.get("held") or {}).get("stage", run.get("current_stage") or 0))
        saga = CompensateRun(failed_stage=held_stage)
        return Cancel(
            "compensating",
            status,
            entry | {"outcome": "compensating"},
            [
                _emit(stopping, command, now, resumption=era),
                _emit(saga, command, now, resumption=era),
            ],
        )
    if status in (RunStatus.PLANNED, RunStatus.RUNNING):
        stopping = RunCancelling(
            actor=order.actor, reason=order.reason, policy_ids=order.policy_ids
        )
        return Cancel(
            "cancelling",
            status,
            entry | {"outcome": "cancelling"},
            [_emit(stopping, command, now, resumption=era)],
        )
    return Cancel("ignored", status, entry | {"outcome": f"ignored: the run was {status}"})


def queue_reason(in_progress: int, ahead: int, limit: int) -> str | None:
    """None: a run may start now; else why it waits. Runs of a tenant start in order:
    one that finds earlier runs queued waits behind them, even when a slot is free (they
    have been woken to take it)."""
    if limit <= 0 or in_progress + ahead < limit:
        return None
    reason = f"the tenant has {in_progress} of its {limit} concurrent runs in progress"
    if ahead:
        reason += f" and {ahead} earlier run(s) waiting"
    return reason + "; the run waits its turn"


def queued(
    accepted: Envelope, reason: str, limit: int, in_progress: int, ahead: int, now: datetime
) -> Envelope:
    """The run waits. One event per run, however often it is found waiting (same id)."""
    payload = RunQueued(reason=reason, limit=limit, in_progress=in_progress, ahead=ahead)
    return _emit(payload, accepted, now)


def admitted(
    run_id: str, tenant: str, cause: Envelope, limit: int, in_progress: int, now: datetime
) -> Envelope:
    """The command to plan a queued run, caused by the run that ended (or the one that
    found a free slot): its id derives from that cause and the run woken."""
    return emit(
        RunAdmitted(limit=limit, in_progress=in_progress),
        cause=cause,
        resumption=0,  # a queued run was never resumed (whatever its cause's run was)
        run_id=run_id,
        tenant=tenant,
        source=SOURCE,
        now=now,
        discriminator=run_id,
    )


ResumeOutcome = Literal["resumed", "ignored", "repeat"]


@dataclass(frozen=True)
class Resume:
    """What a resume request does to its run, seen in status `seen`: `resumed` (planned
    anew, running again from `from_stage`), `ignored` (it was not held, or cannot be
    planned now: only the request is kept, the run stays as it was), `repeat` (applied
    before). `entry` is the request as the run keeps it (`interventions`, `resumes`)."""

    outcome: ResumeOutcome
    seen: str
    entry: dict[str, Any]
    events: list[Envelope] = field(default_factory=list)
    resumption: int = 0
    graph_version: str = ""
    stages: list[list[str]] = field(default_factory=list)
    links: tuple[Link, ...] = ()
    from_stage: int = 0


def on_resume(
    command: Envelope,
    run: Mapping[str, Any],
    graph: ActionGraph | None,
    graph_error: str | None,
    succeeded: Collection[str],
    now: datetime,
) -> Resume:
    """Decide a resume request (`stratum.run.resume`, authorized already) for `run` as
    stored, with the graph in force now and the nodes that have `succeeded` (they never
    run again). The run is planned anew and runs from the first stage that has a node
    without a success (the last stage when none has: it completes at once)."""
    order = command.payload(ResumeRun)
    status = str(run.get("status") or "")
    entry = allowed_entry(command, "resume", order, now)
    if seen_before(command, run):
        return Resume("repeat", status, entry)
    if status != RunStatus.HELD:
        return Resume("ignored", status, entry | {"outcome": f"ignored: the run was {status}"})
    if graph is None:
        why = f"no valid workflow graph is loaded: {graph_error or 'no definitions'}"
        return Resume("ignored", status, entry | {"outcome": f"ignored: {why}"})
    try:
        stages, links = staged(graph, str(run.get("topic") or ""))
    except PlanError as problem:
        return Resume("ignored", status, entry | {"outcome": f"ignored: {problem}"})
    from_stage = next(
        (i for i, nodes in enumerate(stages) if set(nodes) - set(succeeded)), len(stages) - 1
    )
    resumption = int(run.get("resumptions") or 0) + 1
    resumed = RunResumed(
        actor=order.actor,
        reason=order.reason,
        policy_ids=order.policy_ids,
        resumption=resumption,
        graph_version=graph.version,
        stages=stages,
        from_stage=from_stage,
    )
    execute = ExecuteStage(stage=from_stage, nodes=stages[from_stage])
    events = [
        follow(resumed, command, source=SOURCE, now=now, resumption=resumption),
        follow(
            execute,
            command,
            source=SOURCE,
            now=now,
            discriminator=str(from_stage),
            resumption=resumption,
        ),
    ]
    outcome = {
        "outcome": "resumed",
        "resumption": resumption,
        "graph_version": graph.version,
        "from_stage": from_stage,
    }
    return Resume(
        "resumed",
        status,
        entry | outcome,
        events,
        resumption,
        graph.version,
        stages,
        links,
        from_stage,
    )
