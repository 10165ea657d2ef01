"""A tenant's `max_concurrent_runs`: runs beyond it wait queued, in the database.

A run that would exceed its tenant's limit, or that finds earlier runs of the tenant
queued, is marked queued (`stratum.run.queued`, its view shows why) and its message is
acked: waiting holds no message, no redelivery and no consumer slot. When a run of the
tenant ends (`stratum.run.succeeded`, `stratum.run.compensated`, or a
`stratum.run.failed` that no saga follows), the oldest queued runs that fit are sent
`stratum.run.admitted`, stored before it is published like every event, and the planner
plans them. An admitted run holds its slot until it is planned and is admitted once:
without that, every run's end would admit the same oldest runs again. A wake-up lost
with a crash is made good by the redelivery of the message that caused it, or by the
watchdog, which drives a run quiet in Accepted again.

Deciding and recording a run's place is serialised per tenant within the process (one
lock shared by every planner instance in it), so two runs never take the last slot
together. Several Stratum processes on one SurrealDB server may briefly exceed a limit by
one run each: the limit is exact within a process.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import datetime

from functions.planner import core
from functions.planner.ports import QueueStore
from stratum.events import Envelope
from stratum.keyed_lock import KeyedLocks
from stratum.runs.tenant_limits import TenantLimits
from stratum.store import StaleWriteError

# shared by every planner instance of the process
TENANT_LOCKS = KeyedLocks()
# queued runs woken at once when a tenant has no limit (any more)
WAKE_BATCH = 64


class RunQueue:
    """Admission of runs against their tenant's `max_concurrent_runs`."""

    def __init__(self, store: QueueStore, limits: TenantLimits) -> None:
        self._store = store
        self._limits = limits

    def limit(self, tenant: str) -> int:
        return self._limits.of(tenant).max_concurrent_runs

    @contextlib.asynccontextmanager
    async def turn(self, tenant: str, *, always: bool = False) -> AsyncIterator[None]:
        """Hold the tenant while deciding a run's place and recording it (a tenant without
        a limit has no place to decide: its runs are planned side by side)."""
        if self.limit(tenant) <= 0 and not always:
            yield
            return
        async with TENANT_LOCKS.hold(tenant):
            yield

    async def queue_if_full(self, accepted: Envelope, now: datetime) -> list[Envelope] | None:
        """Inside `turn`: None if the run may be planned now; else it is queued, and the
        events to publish (its `run.queued`, and `run.admitted` for earlier queued runs
        when a slot is free for them)."""
        limit = self.limit(accepted.tenant)
        if limit <= 0:
            return None
        load = await self._store.tenant_load(accepted.tenant, accepted.runid)
        reason = core.queue_reason(load.in_progress, load.ahead, limit)
        if reason is None:
            return None
        events = [core.queued(accepted, reason, limit, load.in_progress, load.ahead, now)]
        await self._store.queue_run(accepted.runid, reason, events, cause=accepted.id)
        if load.in_progress < limit:
            # a slot is free, yet earlier runs wait: their wake-up may have been lost
            events += await self._wake(accepted.tenant, accepted, now)
        return events

    async def wake(self, ended: Envelope, now: datetime) -> list[Envelope]:
        """A run of `ended.tenant` ended: admit the oldest queued runs that now fit."""
        async with self.turn(ended.tenant, always=True):
            return await self._wake(ended.tenant, ended, now)

    async def _wake(self, tenant: str, cause: Envelope, now: datetime) -> list[Envelope]:
        limit = self.limit(tenant)
        # runs admitted before and not planned yet hold their slots: a wake-up admits
        # each waiting run once, not the same oldest ones again at every run's end
        holding, head = await self._store.queue_head(tenant, limit if limit > 0 else WAKE_BATCH)
        free = limit - holding if limit > 0 else len(head)
        woken = []
        for run_id in head[: max(free, 0)]:
            event = core.admitted(run_id, tenant, cause, limit, holding, now)
            try:
                await self._store.admit_queued(run_id, [event], cause=cause.id)
            except StaleWriteError:
                continue  # planned or admitted meanwhile (a redelivery, the watchdog)
            woken.append(event)
        return woken
