"""Ending the run of a message given up on for a permanent error.

The step that message asked for can never be taken, so its run cannot go on: left as it
is, it would stay Running and the watchdog would drive it into the same error every
`stuck_after`. The adapter ends it instead, with the events a run already ends with, so
the projector shows it and the planner lets the tenant's next queued run start:

| the run was | it ends | with |
|---|---|---|
| Accepted (never planned) | Failed | `stratum.run.rejected` |
| Planned, Running | Failed, no saga | `stratum.run.failed` (`compensating: false`) |
| Cancelling | Cancelled, or CompensationFailed naming what succeeded | `stratum.run.cancelled` |
| Compensating | CompensationFailed, naming the steps not undone | `stratum.run.compensated` |

(A cancelled run's saga ends with `stratum.run.cancelled` instead; a Cancelling one's
`failed` names what succeeded, since nothing of it was undone.)
| ended | as it was | nothing |

(A compensating run whose every step had ended already is Compensated: the saga was done.)

Like every state change, the end is stored with its event (a guarded write, DB first)
before the adapter publishes it; its id derives from the message, so a repeat stores
nothing new and announces the same event again. It is of the run's resumption as stored
(`Envelope.resumption`), so a resumed run's read model takes it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from stratum.clock import utc_now
from stratum.events import (
    Envelope,
    Payload,
    RunCancelled,
    RunCompensated,
    RunFailed,
    RunRejected,
    emit,
)
from stratum.runs.cancel import CancelOrder
from stratum.runs.saga import undo_order
from stratum.runs.status import RunStatus
from stratum.runtime.function import RUN_ENDINGS, Function, Inbound, run_key
from stratum.runtime.handling import message_id
from stratum.store import DeadLetter, RunStore, StaleWriteError

SOURCE = "stratum/runtime"
ENDINGS = frozenset(RUN_ENDINGS)
MAX_REASON_CHARS = 1000
# a saga step that ended this way undid (or had nothing to undo) its node
_UNDONE = ("succeeded", "skipped")


def reason_of(function: str, inbound: Inbound, letter: DeadLetter) -> str:
    """One line naming who gave up on what, where it is kept, and the error."""
    text = (
        f"{function} gave up on {inbound.subject} message {message_id(inbound) or '?'} "
        f"(dead letter {letter.id}): {letter.error}"
    )
    return " ".join(text.split())[:MAX_REASON_CHARS]


def ending(
    run: Mapping[str, Any],
    reason: str,
    executions: Mapping[str, Mapping[str, Any]],
    steps: Mapping[str, Mapping[str, Any]],
    *,
    cause: str,
    now: datetime,
) -> Envelope | None:
    """The event that ends `run` (as stored: `_id`, `status`, ...), or None when it has
    ended already. `executions` and `steps` (its node executions and saga steps) matter
    only to a compensating run."""
    status = run.get("status")
    cancel = CancelOrder.of(run.get("cancel"))
    payload: Payload
    if status == RunStatus.ACCEPTED:
        payload = RunRejected(error=reason)
    elif status in (RunStatus.PLANNED, RunStatus.RUNNING):
        stage = max(int(run.get("current_stage", 0)), 0)
        payload = RunFailed(stage=stage, error=reason, compensating=False)
    elif status == RunStatus.CANCELLING:  # stopped before its saga: nothing was undone
        order = cancel or CancelOrder("?", "")
        undone = sorted(node for _, node in undo_order(executions))
        payload = RunCancelled(actor=order.actor, reason=order.reason, failed=undone)
    elif status == RunStatus.COMPENSATING:
        undo = [node for _, node in undo_order(executions)]
        compensated = sorted(n for n in undo if steps.get(n, {}).get("status") == "succeeded")
        failed = sorted(n for n in undo if steps.get(n, {}).get("status") not in _UNDONE)
        if cancel is not None:
            payload = RunCancelled(
                actor=cancel.actor, reason=cancel.reason, compensated=compensated, failed=failed
            )
        else:
            payload = RunCompensated(compensated=compensated, failed=failed)
    else:
        return None
    return emit(
        payload,
        cause=cause,
        run_id=str(run["_id"]),
        tenant=str(run["tenant"]),
        source=SOURCE,
        now=now,
        discriminator="ended",
        resumption=int(run.get("resumptions") or 0),
    )


async def end_run(store: RunStore, run_id: str, reason: str, *, cause: str) -> list[Envelope]:
    """End `run_id` for good, its end stored before it is returned for publishing. What
    to announce: the end just stored, or the one this message (`cause`) stored before (a
    repeat); nothing when the run does not exist or ended some other way."""
    run = await store.get_run(run_id)
    if run is None:
        return []
    executions: dict[str, dict[str, Any]] = {}
    steps: dict[str, dict[str, Any]] = {}
    if run.get("status") in (RunStatus.COMPENSATING, RunStatus.CANCELLING):
        executions = await store.node_executions(run_id)
        steps = await store.compensations(run_id)
    event = ending(run, reason, executions, steps, cause=cause, now=utc_now())
    if event is None:
        return await _ended_by(store, cause)
    try:
        await _store(store, run, event, cause)
    except StaleWriteError:  # moved meanwhile: a repeat of this message ended it, or another
        return await _ended_by(store, cause)  # message moved it on (which goes on from there)
    return [event]


async def end_run_of(
    function: Function, store: RunStore, inbound: Inbound, letter: DeadLetter
) -> list[Envelope]:
    """For a function that drives runs (`Function.ends_runs`), end the run of `inbound`,
    which it gave up on as `letter`; nothing for a message that names no run."""
    run_id = run_key(inbound)
    if not function.ends_runs or not run_id:
        return []
    reason = reason_of(function.name, inbound, letter)
    return await end_run(store, run_id, reason, cause=message_id(inbound) or letter.id)


async def _store(store: RunStore, run: Mapping[str, Any], event: Envelope, cause: str) -> None:
    if event.type == RunCompensated.TYPE:
        failed = event.payload(RunCompensated).failed
        status = RunStatus.COMPENSATION_FAILED if failed else RunStatus.COMPENSATED
        error = None
    elif event.type == RunCancelled.TYPE:
        ended = event.payload(RunCancelled)
        failed = ended.failed
        status = RunStatus.COMPENSATION_FAILED if failed else RunStatus.CANCELLED
        error = CancelOrder(ended.actor, ended.reason).error
    else:  # run.rejected, run.failed: the run is Failed with the reason
        status, failed, error = RunStatus.FAILED, [], str(event.data["error"])
    await store.end_given_up_run(
        event.runid,
        seen=str(run["status"]),
        stage=run.get("current_stage"),
        ending=status,
        error=error,
        failed=failed,
        events=[event],
        cause=cause,
    )


async def _ended_by(store: RunStore, cause: str) -> list[Envelope]:
    return [event for event in await store.events_caused_by(cause) if event.type in ENDINGS]
