"""The planner's decisions, pure: what a run's next step is after each event, and what
an operator's cancel does to a run as it stands."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from stratum.clock import iso
from stratum.errors import PlanError
from stratum.events import (
    CancelRun,
    Envelope,
    ExecuteStage,
    Payload,
    RunAdmitted,
    RunCancelled,
    RunCancelling,
    RunCompensated,
    RunFailed,
    RunPlanned,
    RunQueued,
    RunRejected,
    RunSucceeded,
    emit,
    follow,
)
from stratum.graph import ActionGraph, capability_edges, plan
from stratum.runs.cancel import CancelOrder
from stratum.runs.status import RunStatus

SOURCE = "stratum/planner"


@dataclass(frozen=True)
class Planned:
    graph_version: str
    stages: tuple[tuple[str, ...], ...]
    # (from stage, to stage, capabilities handed over): stored as graph relations
    links: tuple[tuple[int, int, list[str]], ...]
    events: list[Envelope] = field(default_factory=list)


@dataclass(frozen=True)
class Rejected:
    error: str
    events: list[Envelope] = field(default_factory=list)


def _emit(payload: Payload, cause: Envelope, now: datetime, discriminator: str = "") -> Envelope:
    return follow(payload, cause, source=SOURCE, now=now, discriminator=discriminator)


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
        chosen = plan(graph, topic)
    except PlanError as problem:
        return Rejected(str(problem), [_emit(RunRejected(error=str(problem)), accepted, now)])
    stage_of = {node: index for index, stage in enumerate(chosen.stages) for node in stage}
    flows: defaultdict[tuple[int, int], set[str]] = defaultdict(set)
    for edge in capability_edges(graph, chosen):
        flows[(stage_of[edge.producer], stage_of[edge.consumer])].add(edge.capability)
    links = tuple((src, dst, sorted(caps)) for (src, dst), caps in sorted(flows.items()))
    stages = [list(stage) for stage in chosen.stages]
    events = [
        _emit(RunPlanned(graph_version=graph.version, stages=stages), accepted, now),
        _emit(ExecuteStage(stage=0, nodes=stages[0]), accepted, now, "0"),
    ]
    return Planned(graph.version, chosen.stages, links, events)


def ends_run(event: Envelope) -> bool:
    """Whether `event` ends its run (so a queued run of its tenant may start): a
    `run.succeeded`, a `run.compensated`, a `run.cancelled`, or a `run.failed` that no
    saga follows."""
    if event.type == RunFailed.TYPE:
        return not event.payload(RunFailed).compensating
    return event.type in (RunSucceeded.TYPE, RunCompensated.TYPE, RunCancelled.TYPE)


CancelOutcome = Literal["cancelling", "cancelled", "ignored", "repeat"]


@dataclass(frozen=True)
class Cancel:
    """What a cancel request does to its run, seen in status `seen`: `cancelling` (a
    stage is running or about to: the stage executor stops it), `cancelled` (nothing had
    started: the run ends here), `ignored` (it had ended, or is being stopped or undone
    already: only the request is kept), `repeat` (this request was applied before).
    `entry` is the request as the run keeps it (`interventions`)."""

    outcome: CancelOutcome
    seen: str
    entry: dict[str, Any]
    events: list[Envelope] = field(default_factory=list)


def on_cancel(command: Envelope, run: Mapping[str, Any], now: datetime) -> Cancel:
    """Decide a cancel request (`stratum.run.cancel`, authorized already) for `run` as
    stored. A queued run (or one not yet planned) ends Cancelled at once, having run
    nothing; a planned or running one becomes Cancelling."""
    order = command.payload(CancelRun)
    status = str(run.get("status") or "")
    entry: dict[str, Any] = {
        "request": command.id,
        "action": "cancel",
        "actor": order.actor,
        "reason": order.reason,
        "decision": "allow",
        "policy_ids": order.policy_ids,
        "at": iso(now),
    }
    if (run.get("cancel") or {}).get("request") == command.id:
        return Cancel("repeat", status, entry)
    if status == RunStatus.ACCEPTED:
        error = CancelOrder(order.actor, order.reason).error
        ended = RunCancelled(actor=order.actor, reason=order.reason)
        return Cancel(
            "cancelled",
            status,
            entry | {"outcome": "cancelled", "error": error},
            [_emit(ended, command, now)],
        )
    if status in (RunStatus.PLANNED, RunStatus.RUNNING):
        stopping = RunCancelling(
            actor=order.actor, reason=order.reason, policy_ids=order.policy_ids
        )
        return Cancel(
            "cancelling", status, entry | {"outcome": "cancelling"}, [_emit(stopping, command, now)]
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
        run_id=run_id,
        tenant=tenant,
        source=SOURCE,
        now=now,
        discriminator=run_id,
    )
