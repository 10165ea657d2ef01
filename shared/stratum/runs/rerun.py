"""A rerun: a new run of a run's trigger event (`stratum rerun`), pure.

The new run has an id of its own (derived from the request), the original's trigger —
topic, subject, type, source, data, actor; its event id is `rerun:<request>` — and
`rerun_of`; the original records the new one (`stratum.run.rerun`). Its
trigger is decided again, by the policies in force now and as the principal that sent the
original event: it may be Denied where the original was accepted (a revoked publisher, a
tightened policy), or accepted where the original was denied.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from stratum.clock import iso
from stratum.events import Envelope, RunAccepted, RunDenied, RunRerun, emit
from stratum.ids import run_id
from stratum.runs.status import RunStatus
from stratum.store import PublisherRecord
from stratum.trust.principal import Principal

SOURCE = "stratum/api"
# what a rerun copies of the original's record: the trigger, as the publisher sent it
TRIGGER_FIELDS = (
    "topic",
    "trigger_subject",
    "event_id",
    "event_type",
    "event_source",
    "actor",
    "inputs_hash",
)


def rerun_event_id(request_id: str) -> str:
    """The event id a rerun is recorded under: one run per (tenant, event id) is a rule of
    the store, so a rerun names its request, and `rerun_of` the run (and event) it runs
    again."""
    return f"rerun:{request_id}"


def rerun_id(tenant: str, request_id: str) -> str:
    return run_id(tenant, rerun_event_id(request_id))


def original_principal(
    run: Mapping[str, Any], publisher: PublisherRecord | None, signatures_required: bool
) -> Principal | str:
    """Who sent the original event, as a trigger decided now would see it; or why it
    cannot be decided again (a publisher revoked or unknown, an unsigned event where
    signatures are now required)."""
    tenant, actor = str(run["tenant"]), str(run.get("actor") or "")
    kind, _, name = actor.partition(":")
    if kind == "publisher":
        if publisher is None or publisher.tenant != tenant:
            return f"publisher {name} is not registered in tenant {tenant} any more"
        if not publisher.active:
            return f"publisher {name} was revoked at {publisher.revoked_at}"
        return Principal(
            kind="publisher", name=name, tenant=tenant, public_key=publisher.public_key
        )
    if kind == "source":
        if signatures_required:
            return "the original event was unsigned, and signatures are required now"
        return Principal(kind="source", name=name, tenant=tenant)
    return f"the original event's sender was never verified ({actor})"


@dataclass(frozen=True)
class Rerun:
    """The new run's record and announcing event, and the original's `run.rerun`."""

    record: dict[str, Any]
    started: Envelope
    noted: Envelope
    status: RunStatus


def rerun(
    original: Mapping[str, Any],
    request_id: str,
    *,
    asked_by: str,
    reason: str,
    rerun_policies: list[str],
    allowed: bool,
    why: str,
    trigger_policies: list[str],
    now: datetime,
) -> Rerun:
    """The new run of `original`'s trigger: Accepted when the trigger was `allowed` again
    (by `trigger_policies`), else Denied for `why`. `asked_by` asked for it, allowed by
    `rerun_policies`."""
    tenant, original_id = str(original["tenant"]), str(original["_id"])
    new_id = rerun_id(tenant, request_id)
    trigger = {field: str(original.get(field) or "") for field in TRIGGER_FIELDS}
    trigger["event_id"] = rerun_event_id(request_id)
    record: dict[str, Any] = {
        "id": new_id,
        "tenant": tenant,
        **trigger,
        "event_data": original.get("event_data") or {},
        "actor_key": original.get("actor_key"),
        "rerun_of": original_id,
        "rerun_request": {"request": request_id, "actor": asked_by, "reason": reason},
        "policy_ids": trigger_policies,
    }
    if allowed:
        status = RunStatus.ACCEPTED
        record |= {"decision": "allow", "accepted_at": iso(now)}
        payload: RunAccepted | RunDenied = RunAccepted(
            **trigger, event_data=record["event_data"], rerun_of=original_id
        )
    else:
        status = RunStatus.DENIED
        record |= {"decision": "deny", "reason": why, "finished_at": iso(now)}
        payload = RunDenied(
            **trigger, reason=why, policy_ids=trigger_policies, rerun_of=original_id
        )
    started = emit(payload, cause=new_id, run_id=new_id, tenant=tenant, source=SOURCE, now=now)
    noted = emit(
        RunRerun(
            rerun=new_id,
            status=status.value,
            actor=asked_by,
            reason=reason,
            policy_ids=rerun_policies,
        ),
        cause=request_id,
        run_id=original_id,
        tenant=tenant,
        source=SOURCE,
        now=now,
        resumption=int(original.get("resumptions") or 0),
    )
    return Rerun(record, started, noted, status)
