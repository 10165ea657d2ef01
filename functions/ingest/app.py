"""Ingest: publishers' events in, accepted runs out (`stratum.run.accepted`).

Per event: parse (CloudEvents) -> rate limit -> verify the publisher's signature (NKeys)
-> ask the policies (Cedar) -> accept. An event that fails verification or that the
policies refuse is recorded as a Denied run with the reason and announced
(`stratum.run.denied`); nothing of it runs. A malformed event is recorded as a rejection
and dead-lettered (InvalidEventError)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from functions.ingest import core
from functions.ingest.limits import EventRateLimiter
from functions.ingest.ports import IngestStore
from stratum.authz import PolicyRegistry, TriggerContext
from stratum.errors import InvalidEventError, RefusedError, UnverifiedEventError
from stratum.events import Envelope, RunAccepted, RunDenied
from stratum.ids import run_id
from stratum.runs.status import RunStatus
from stratum.runtime import Declaration, Dependencies, Inbound
from stratum.store import PublisherRecord
from stratum.telemetry import metrics
from stratum.telemetry.logs import log_context
from stratum.trust.principal import Principal
from stratum.trust.publisher_auth import SignatureRules, claimed_key, verify_publisher


@dataclass(frozen=True)
class Malformed:
    """A message that is no event: recorded as a rejection, then dead-lettered."""

    inbound: Inbound
    error: InvalidEventError


@dataclass(frozen=True)
class Incoming:
    event: core.IncomingEvent
    inbound: Inbound
    # the publisher key the event says signed it (None: it names none)
    key: str | None


@dataclass(frozen=True)
class Accept:
    run: dict[str, Any]
    accepted: Envelope


@dataclass(frozen=True)
class Deny:
    """The trigger recorded as a Denied run; `why` is the kind of reason (metrics.DENIED_*)."""

    incoming: core.IncomingEvent
    run: dict[str, Any]
    denied: Envelope
    why: str


@dataclass(frozen=True)
class Reject:
    record: dict[str, Any]
    error: InvalidEventError
    subject: str


IngestEvent = Malformed | Incoming
# the publisher the event names (None: it names none, or an unknown key)
Publisher = PublisherRecord | None
IngestDecision = Accept | Deny | Reject


class IngestHandler:
    """Decides whether a publisher's event starts a run."""

    def __init__(self, dependencies: Dependencies) -> None:
        settings = dependencies.settings
        self.store: IngestStore = dependencies.store
        self.subjects = dependencies.subjects
        self.log = dependencies.log
        self.policies: PolicyRegistry = dependencies.policy_registry()
        self.rate = EventRateLimiter(settings.tenant_limits)
        self.rules = SignatureRules(settings.require_signatures, settings.signature_window)

    def parse(self, inbound: Inbound) -> IngestEvent:
        try:
            event = core.parse_incoming(
                inbound.subject, inbound.headers, inbound.body, self.subjects
            )
        except InvalidEventError as error:
            return Malformed(inbound, error)
        return Incoming(event, inbound, claimed_key(inbound.headers))

    async def load(self, event: IngestEvent) -> Publisher:
        """The rate limit first (a tenant over its events per second: the event waits, or
        is refused, `limits.py`), then the publisher the event names."""
        if isinstance(event, Malformed):
            return None
        incoming = event.event
        try:
            self.rate.admit(incoming.tenant, run_id(incoming.tenant, incoming.id), time.monotonic())
        except RefusedError:
            metrics.EVENTS_DENIED.labels(incoming.tenant, metrics.DENIED_RATE_LIMITED).inc()
            raise
        return await self.store.publisher_by_key(event.key) if event.key else None

    def decide(self, event: IngestEvent, state: Publisher, now: datetime) -> IngestDecision:
        if isinstance(event, Malformed):
            record = core.rejection(
                event.inbound.subject, event.inbound.body, str(event.error), now
            )
            return Reject(record, event.error, event.inbound.subject)
        incoming, key = event.event, event.key
        try:
            principal = self.principal_of(event, state, now)
        except UnverifiedEventError as error:
            actor = f"key:{key}" if key else f"unsigned:{incoming.source}"
            return deny(incoming, actor, str(error), [], now, key, why=metrics.DENIED_UNVERIFIED)
        verdict = self.policies.decide(
            principal,
            incoming.tenant,
            incoming.topic,
            TriggerContext(
                subject=incoming.subject,
                time=now,
                event_id=incoming.id,
                event_type=incoming.type,
                event_source=incoming.source,
            ),
        )
        if not verdict.allowed:
            return deny(
                incoming,
                principal.actor,
                verdict.reason,
                verdict.policy_ids,
                now,
                principal.public_key,
                why=metrics.DENIED_POLICY,
            )
        run, accepted = core.accept(incoming, actor=principal.actor, now=now)
        # for the audit trail: what decided, and the verified publisher's key
        run |= {
            "decision": "allow",
            "policy_ids": verdict.policy_ids,
            "actor_key": principal.public_key,
        }
        return Accept(run, accepted)

    def principal_of(self, event: Incoming, publisher: Publisher, now: datetime) -> Principal:
        """Who published the event: the registered publisher whose signature verifies
        (UnverifiedEventError if none does), or — only where signatures are not required
        and the event carries none — its unverified CloudEvents `source`."""
        incoming, inbound = event.event, event.inbound
        if event.key is None and not self.rules.required:
            return Principal(kind="source", name=incoming.source, tenant=incoming.tenant)
        return verify_publisher(
            inbound.headers,
            inbound.subject,
            inbound.body,
            incoming.tenant,
            publisher,
            now_ms=int(now.timestamp() * 1000),
            window_seconds=self.rules.window_seconds,
        )

    async def commit(self, decision: IngestDecision) -> Sequence[Envelope]:
        if isinstance(decision, Reject):
            await self.store.record_rejection(decision.record)
            self.log.warning(
                "event rejected", extra={"subject": decision.subject, "reason": str(decision.error)}
            )
            tenant = log_context.get().get("tenant", "")
            metrics.EVENTS_DENIED.labels(tenant, metrics.DENIED_INVALID).inc()
            raise decision.error
        run = decision.run
        if isinstance(decision, Deny):
            if not await self.store.deny_run(run, decision.denied, cause=run["id"]):
                return await self.repeated(run, decision.denied, RunStatus.DENIED)
            metrics.EVENTS_DENIED.labels(decision.incoming.tenant, decision.why).inc()
            self.log.warning(
                "trigger denied",
                extra={
                    "run_id": run["id"],
                    "actor": run["actor"],
                    "subject": decision.incoming.subject,
                    "policy_ids": run["policy_ids"],
                    "reason": run["reason"],
                },
            )
            return [decision.denied]
        if not await self.store.accept_run(run, decision.accepted, cause=run["id"]):
            return await self.repeated(run, decision.accepted, RunStatus.ACCEPTED)
        return [decision.accepted]

    async def repeated(
        self, run: dict[str, Any], event: Envelope, status: RunStatus
    ) -> Sequence[Envelope]:
        """A duplicate: re-announce what the first copy caused (the bus drops repeats). A
        run stored without the event created with it is announced by this copy, stored
        again first: the run must not wait for an announcement nobody will make."""
        caused = await self.store.events_caused_by(run["id"])
        if caused:
            return caused
        restored = await self.store.restore_announcement(
            run["id"], event, run["id"], status=status, inputs_hash=run["inputs_hash"]
        )
        if restored:
            self.log.warning(
                "a stored run had lost the event announcing it: stored and announced again",
                extra={"run_id": run["id"], "event_type": event.type},
            )
        return restored


def deny(
    incoming: core.IncomingEvent,
    actor: str,
    reason: str,
    policy_ids: list[str],
    now: datetime,
    key: str | None,
    *,
    why: str,
) -> Deny:
    """The trigger as a Denied run; nothing of it runs."""
    run, denied = core.deny(incoming, actor=actor, reason=reason, policy_ids=policy_ids, now=now)
    run["actor_key"] = key  # the key the event named (verified or not): for the audit
    return Deny(incoming, run, denied, why)


DECLARATION = Declaration(
    name="ingest",
    handler=IngestHandler,
    source="publishers",
    consumes=None,
    concurrency=16,
    emits=(RunAccepted.TYPE, RunDenied.TYPE),
    decides_triggers=True,
)
