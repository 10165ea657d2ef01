"""The audit trail: one record per run, built from what the database holds about it.

A record says who triggered what, in which tenant, what the policies decided and which
policies decided it, which graph version ran on which inputs and produced which outputs,
under which credential leases its scripts ran (lease ids only, never credentials), and
what operators asked of it (a cancel, a resume, a rerun: who, why, what Cedar decided,
how it went), and the reruns linking it to other runs.
Fields that a run does not have (a run denied before planning has no graph version; no
lease when a node has no secrets) are null or empty, so the record's shape never depends on
which parts of Stratum recorded what. `stratum.trust.audit_chain` makes an export of records
tamper-evident.

Pure: the store reads the rows, this module only shapes them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

AuditStep = Literal["action", "compensate"]


class CredentialUse(BaseModel):
    """One script attempt that ran with secrets: which lease they came under."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    node: str
    step: AuditStep
    attempt: int | None = None
    idempotency_key: str | None = None
    lease_id: str


class Intervention(BaseModel):
    """An operator's request of the run, allowed or refused by the policies."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    request: str
    action: str
    actor: str
    at: str
    # `allow` / `deny`, and the policies (`@id`s) that decided it
    decision: str
    policy_ids: list[str] = []
    reason: str = ""
    # why the policies refused it (empty when allowed)
    why: str = ""
    # what came of it: refused, cancelling, cancelled, ignored: ...
    outcome: str = ""


class AuditRecord(BaseModel):
    """What the audit trail says about one run. Ordered by (`timestamp`, `run_id`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # when the run was created (its trigger accepted or denied): the trail's order
    timestamp: str
    run_id: str
    tenant: str
    # `publisher:<name>` (verified signature) or `source:<CloudEvents source>` (unverified)
    actor: str | None = None
    # the publisher's public NKey, when the event was signed
    actor_key: str | None = None
    topic: str | None = None
    trigger_subject: str | None = None
    event_id: str | None = None
    event_type: str | None = None
    event_source: str | None = None
    status: str
    finished_at: str | None = None
    # the authorization decision (`allow` / `deny`) and the policies (`@id`s) that made it
    decision: str | None = None
    policy_ids: list[str] = []
    # why the run was denied, rejected or failed
    reason: str | None = None
    graph_version: str | None = None
    inputs_hash: str | None = None
    outputs_hash: str | None = None
    credential_leases: list[CredentialUse] = []
    interventions: list[Intervention] = []
    # a rerun: the run whose trigger event it ran again; and the reruns of this run
    rerun_of: str | None = None
    reruns: list[str] = []


def record_of(
    run: Mapping[str, Any],
    executions: Iterable[Mapping[str, Any]] = (),
    compensations: Iterable[Mapping[str, Any]] = (),
) -> AuditRecord:
    """The audit record of `run` (a `run` row, its id as `_id` or `id`) and the
    `node_exec` and `compensation` rows of its nodes."""
    status = str(run.get("status") or "")
    leases = [*_leases(executions, "action"), *_leases(compensations, "compensate")]
    return AuditRecord(
        timestamp=str(run.get("created_at") or run.get("accepted_at") or ""),
        run_id=str(run.get("_id") or run.get("id") or ""),
        tenant=str(run["tenant"]),
        actor=run.get("actor"),
        actor_key=run.get("actor_key") or run.get("publisher_key"),
        topic=run.get("topic"),
        trigger_subject=run.get("trigger_subject"),
        event_id=run.get("event_id"),
        event_type=run.get("event_type"),
        event_source=run.get("event_source"),
        status=status,
        finished_at=run.get("finished_at"),
        decision=_decision(run, status),
        policy_ids=[str(policy) for policy in run.get("policy_ids") or []],
        reason=run.get("reason") or run.get("error"),
        graph_version=run.get("graph_version"),
        inputs_hash=run.get("inputs_hash"),
        outputs_hash=run.get("outputs_hash"),
        credential_leases=sorted(
            leases, key=lambda use: (use.node, use.step, use.attempt or 0, use.lease_id)
        ),
        interventions=[
            Intervention.model_validate(entry)
            for entry in run.get("interventions") or []
            if isinstance(entry, Mapping)
        ],
        rerun_of=run.get("rerun_of"),
        reruns=[
            str(link["run"])
            for link in run.get("reruns") or []
            if isinstance(link, Mapping) and link.get("run")
        ],
    )


def order_key(record: AuditRecord) -> tuple[str, str]:
    """The trail's order: by time, then run id for runs created in the same instant."""
    return (record.timestamp, record.run_id)


def _decision(run: Mapping[str, Any], status: str) -> str | None:
    """Recorded as such when authorization stores it; a Denied run can only have been
    denied by it. None: no decision was recorded for this run."""
    decision = run.get("decision")
    if isinstance(decision, str):
        return decision
    if isinstance(decision, Mapping) and "allowed" in decision:
        return "allow" if decision["allowed"] else "deny"
    return "deny" if status == "Denied" else None


def _leases(rows: Iterable[Mapping[str, Any]], step: AuditStep) -> list[CredentialUse]:
    uses = []
    for row in rows:
        attempts = row.get("attempts")
        if not isinstance(attempts, list):
            continue  # a count (older records), not the attempts themselves
        for attempt in attempts:
            lease = _lease_id(attempt.get("credential_lease")) if isinstance(attempt, dict) else ""
            if lease:
                uses.append(
                    CredentialUse(
                        node=str(row.get("node") or ""),
                        step=step,
                        attempt=attempt.get("attempt"),
                        idempotency_key=attempt.get("idempotency_key"),
                        lease_id=lease,
                    )
                )
    return uses


def _lease_id(lease: Any) -> str:
    """The lease's id only: a lease recorded as an object keeps its id, never the rest
    (whatever else it holds stays out of the trail)."""
    if isinstance(lease, str):
        return lease
    if isinstance(lease, Mapping):
        ident = lease.get("lease_id") or lease.get("id")
        return ident if isinstance(ident, str) else ""
    return ""
