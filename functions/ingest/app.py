"""Ingest: publishers' events in, accepted runs out (`stratum.run.accepted`).

Per event: parse (CloudEvents) -> rate limit -> verify the publisher's signature (NKeys)
-> ask the policies (Cedar) -> accept. An event that fails verification or that the
policies refuse is recorded as a Denied run with the reason and announced
(`stratum.run.denied`); nothing of it runs."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from functions.ingest import core
from functions.ingest.limits import EventRateLimiter
from stratum.authz import PolicyRegistry, TriggerContext
from stratum.clock import utc_now
from stratum.errors import InvalidEventError, RefusedError, UnverifiedEventError
from stratum.events import Envelope, RunAccepted, RunDenied
from stratum.ids import run_id
from stratum.runs.tenant_limits import TenantLimits
from stratum.runtime import Function, FunctionContext, Inbound
from stratum.telemetry import metrics
from stratum.telemetry.logs import log_context
from stratum.trust.principal import Principal
from stratum.trust.publisher_auth import SignatureRules, claimed_key, verify_publisher


def build(
    ctx: FunctionContext,
    policies: PolicyRegistry,
    limits: TenantLimits | None = None,
    signatures: SignatureRules | None = None,
) -> Function:
    rate = EventRateLimiter(limits or TenantLimits())
    rules = signatures or SignatureRules()

    async def principal_of(incoming: core.IncomingEvent, inbound: Inbound) -> Principal:
        """Who published the event: the registered publisher whose signature verifies
        (UnverifiedEventError if none does), or — only where signatures are not required
        and the event carries none — its unverified CloudEvents `source`."""
        key = claimed_key(inbound.headers)
        if key is None and not rules.required:
            return Principal(kind="source", name=incoming.source, tenant=incoming.tenant)
        return verify_publisher(
            inbound.headers,
            inbound.subject,
            inbound.body,
            incoming.tenant,
            await ctx.store.publisher_by_key(key) if key else None,
            now_ms=int(time.time() * 1000),
            window_seconds=rules.window_seconds,
        )

    async def refuse(
        incoming: core.IncomingEvent,
        actor: str,
        reason: str,
        policy_ids: list[str],
        now: Any,
        key: str | None = None,
        *,
        why: str,
    ) -> Sequence[Envelope]:
        """Record the trigger as a Denied run and announce it; nothing of it runs. `why`
        is the kind of reason (metrics.DENIED_*)."""
        run, denied = core.deny(
            incoming, actor=actor, reason=reason, policy_ids=policy_ids, now=now
        )
        run["actor_key"] = key  # the key the event named (verified or not): for the audit
        if not await ctx.store.deny_run(run, denied, cause=run["id"]):
            return await ctx.store.events_caused_by(run["id"])
        metrics.EVENTS_DENIED.labels(incoming.tenant, why).inc()
        ctx.log.warning(
            "trigger denied",
            extra={
                "run_id": run["id"],
                "actor": actor,
                "subject": incoming.subject,
                "policy_ids": policy_ids,
                "reason": reason,
            },
        )
        return [denied]

    async def handle(inbound: Inbound) -> Sequence[Envelope]:
        now = utc_now()
        try:
            incoming = core.parse_incoming(
                inbound.subject, inbound.headers, inbound.body, ctx.subjects
            )
        except InvalidEventError as error:
            record = core.rejection(inbound.subject, inbound.body, str(error), now)
            await ctx.store.record_rejection(record)
            ctx.log.warning(
                "event rejected", extra={"subject": inbound.subject, "reason": str(error)}
            )
            tenant = log_context.get().get("tenant", "")
            metrics.EVENTS_DENIED.labels(tenant, metrics.DENIED_INVALID).inc()
            raise
        # a tenant over its events per second: the event waits, or is refused (limits.py)
        try:
            rate.admit(incoming.tenant, run_id(incoming.tenant, incoming.id), time.monotonic())
        except RefusedError:
            metrics.EVENTS_DENIED.labels(incoming.tenant, metrics.DENIED_RATE_LIMITED).inc()
            raise
        try:
            principal = await principal_of(incoming, inbound)
        except UnverifiedEventError as error:
            key = claimed_key(inbound.headers)
            actor = f"key:{key}" if key else f"unsigned:{incoming.source}"
            return await refuse(
                incoming, actor, str(error), [], now, key, why=metrics.DENIED_UNVERIFIED
            )
        decision = policies.decide(
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
        if not decision.allowed:
            return await refuse(
                incoming,
                principal.actor,
                decision.reason,
                decision.policy_ids,
                now,
                principal.public_key,
                why=metrics.DENIED_POLICY,
            )
        run, accepted = core.accept(incoming, actor=principal.actor, now=now)
        # for the audit trail: what decided, and the verified publisher's key
        run |= {
            "decision": "allow",
            "policy_ids": decision.policy_ids,
            "actor_key": principal.public_key,
        }
        if not await ctx.store.accept_run(run, accepted, cause=run["id"]):
            # a duplicate: re-announce what the first copy caused (the bus drops repeats)
            return await ctx.store.events_caused_by(run_id(incoming.tenant, incoming.id))
        return [accepted]

    return Function(
        name="ingest",
        stream=ctx.subjects.events_stream,
        subjects=(ctx.subjects.events_wildcard,),
        handle=handle,
        concurrency=16,
        emits=(RunAccepted.TYPE, RunDenied.TYPE),
    )
