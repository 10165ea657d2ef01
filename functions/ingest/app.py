"""Ingest: publishers' events in, accepted runs out (`stratum.run.accepted`)."""

from __future__ import annotations

from collections.abc import Sequence

from functions.ingest import core
from stratum.clock import utc_now
from stratum.errors import InvalidEventError
from stratum.events import Envelope
from stratum.ids import run_id
from stratum.principal import Principal
from stratum.runtime import Function, FunctionContext, Inbound


def principal_of(incoming: core.IncomingEvent, inbound: Inbound) -> Principal:
    """Who published the event. Until publishers sign events (NKeys), the CloudEvents
    `source` is all we know; this is the seam where the verified publisher goes."""
    return Principal(kind="source", name=incoming.source, tenant=incoming.tenant)


def build(ctx: FunctionContext) -> Function:
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
            raise
        principal = principal_of(incoming, inbound)
        run, accepted = core.accept(incoming, actor=principal.actor, now=now)
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
    )
