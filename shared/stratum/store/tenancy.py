"""Per-tenant reads and the run queue's writes: how many runs a tenant has in progress,
which of its runs wait, and reads that answer only within a tenant."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from stratum.events import Envelope
from stratum.runs.status import RunStatus
from stratum.store.database import AT_LIMIT_MARKER, Database
from stratum.store.guarded import GuardedWrites

# runs that hold one of their tenant's `max_concurrent_runs` slots
IN_PROGRESS = [
    RunStatus.PLANNED.value,
    RunStatus.RUNNING.value,
    RunStatus.CANCELLING.value,
    RunStatus.COMPENSATING.value,
    # a held run keeps its slot until it is resumed or cancelled
    RunStatus.HELD.value,
]
QUEUED = "status = 'Accepted' AND queued_at != NONE"
# a tenant's queued runs, read through the (tenant, status) index; what else a reader
# asks of them (their age, their admission) is filtered after: with the age test in the
# same WHERE, SurrealDB scans every run of the table instead
WAITING_SQL = f"SELECT id, created_at, admitted_at FROM run WHERE tenant = $tenant AND {QUEUED}"
# $load: the tenant's runs in progress, and its queued runs older than $run
LOAD_SQL = (
    "LET $me = (SELECT created_at FROM ONLY type::thing('run', $run));\n"
    "LET $load = {in_progress: count(SELECT id FROM run WHERE tenant = $tenant "
    "AND status IN $busy), "
    f"ahead: count(SELECT id FROM ({WAITING_SQL}) "
    "WHERE created_at < $me.created_at OR (created_at = $me.created_at "
    "AND id < type::thing('run', $run)))};\n"
)


def admission_sql(limit: int) -> str:
    """Abort the transaction (AtLimitError) unless the run may start under `limit`: fewer
    than `limit` runs of $tenant in progress or waiting ahead of it. 0: no limit."""
    if limit <= 0:
        return ""
    return (
        LOAD_SQL + f"IF $load.in_progress + $load.ahead >= {int(limit)} "
        f"{{ THROW '{AT_LIMIT_MARKER}: run ' + $run + ' waits for its tenant' }};\n"
    )


@dataclass(frozen=True)
class TenantLoad:
    """A tenant's runs in progress, and how many of its queued runs are older than the
    one asking (they go first)."""

    in_progress: int
    ahead: int


class Tenancy(GuardedWrites):
    """Mixed into RunStore."""

    db: Database

    async def tenant_load(self, tenant: str, run_id: str) -> TenantLoad:
        """Runs of `tenant` in progress, and its queued runs created before `run_id`
        (in (created_at, id) order: the queue is first come, first served)."""
        rows = await self.db.query(
            LOAD_SQL + "RETURN $load;", {"tenant": tenant, "run": run_id, "busy": IN_PROGRESS}
        )
        load = rows[-1]
        return TenantLoad(in_progress=int(load["in_progress"]), ahead=int(load["ahead"]))

    async def queue_run(
        self, run_id: str, reason: str, events: Sequence[Envelope], cause: str
    ) -> None:
        """Mark an accepted run as waiting for its tenant's limit, with the event saying
        so. StaleWriteError if the run is past Accepted."""
        await self._guarded(
            run_id,
            condition="status = 'Accepted'",
            # waiting again (an admitted run that found the tenant full): in line once more
            assignments="queued_at = queued_at ?? $now, queue_reason = $reason, admitted_at = NONE",
            what=f"run {run_id} is past Accepted",
            events=events,
            cause=cause,
            variables={"reason": reason},
        )

    async def queue_head(self, tenant: str, limit: int) -> tuple[int, list[str]]:
        """The tenant's runs holding a slot — in progress, or admitted and not planned yet
        (their `run.admitted` is on its way to the planner) — and its `limit` oldest
        queued runs not admitted yet: the ones a free slot goes to."""
        counted, admitted, queued = await self.db.query(
            "SELECT count() AS n FROM run WHERE tenant = $tenant AND status IN $busy "
            "GROUP ALL;\n"
            f"SELECT count() AS n FROM ({WAITING_SQL}) WHERE admitted_at != NONE GROUP ALL;\n"
            f"SELECT id, created_at FROM ({WAITING_SQL}) WHERE admitted_at = NONE "
            "ORDER BY created_at, id LIMIT $limit;",
            {"tenant": tenant, "busy": IN_PROGRESS, "limit": limit},
        )
        holding = sum(int(rows[0]["n"]) if rows else 0 for rows in (counted, admitted))
        return holding, [str(row["id"].id) for row in queued]

    async def admit_queued(self, run_id: str, events: Sequence[Envelope], cause: str) -> None:
        """Record that a queued run got its turn, with the command to plan it.
        StaleWriteError if it is no longer queued (planned meanwhile) or was admitted
        already: a run is admitted once per wait, however many wake-ups find it."""
        await self._guarded(
            run_id,
            condition=f"{QUEUED} AND admitted_at = NONE",
            assignments="admitted_at = $now",
            what=f"run {run_id} is not queued, or was admitted already",
            events=events,
            cause=cause,
        )

    async def run_in_tenant(self, run_id: str, tenant: str) -> bool:
        """Whether `run_id` exists within `tenant` (another tenant's run does not)."""
        rows = (
            await self.db.query(
                "SELECT VALUE id FROM type::thing('run', $run) WHERE tenant = $tenant;",
                {"run": run_id, "tenant": tenant},
            )
        )[0]
        return bool(rows)
