"""A failed run's saga: each compensation step marked running, recorded as it ends,
and the saga's end.

Every write that announces something stores the announcing events in the same
transaction (`event` table: the run's log and the outbox); conditional writes THROW the
stale marker when the run is not in the expected state (StaleWriteError to the caller).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from stratum.clock import iso, utc_now
from stratum.events import Envelope
from stratum.runs.status import RunStatus
from stratum.store.guarded import GuardedWrites, event_rows
from stratum.store.read_models import plain_record


class Sagas(GuardedWrites):
    async def compensations(self, run_id: str) -> dict[str, dict[str, Any]]:
        """Every saga step of the run by node, ended (`succeeded`, `failed`, `skipped`) or
        still `running` (started by a delivery that has not recorded its end)."""
        rows = (
            await self.db.query("SELECT * FROM compensation WHERE run = $run;", {"run": run_id})
        )[0]
        return {row["node"]: plain_record(row) for row in rows}

    async def begin_compensation(self, run_id: str, node: str) -> int:
        """Mark a saga step running; how many times it has been started, this one included
        (its attempts are numbered in a block of their own, as a stage's nodes are)."""
        rows = (
            await self.db.query(
                "UPSERT type::thing('compensation', [$run, $node]) SET run = $run, node = $node, "
                "status = 'running', started_at = $now, executions += 1 "
                "RETURN VALUE executions;",
                {"run": run_id, "node": node, "now": iso(utc_now())},
            )
        )[0]
        return int(rows[0])

    async def record_compensation(
        self, run_id: str, node: str, record: dict[str, Any], events: Sequence[Envelope], cause: str
    ) -> None:
        """Record how a saga step ended, with the event announcing it."""
        await self.db.transaction(
            "UPSERT type::thing('compensation', [$run, $node]) MERGE $record RETURN NONE;\n"
            "INSERT IGNORE INTO event $events RETURN NONE;",
            {
                "run": run_id,
                "node": node,
                "record": {**record, "run": run_id, "node": node},
                "events": event_rows(events, cause),
            },
        )

    async def finish_compensation(
        self,
        run_id: str,
        failed: list[str],
        events: Sequence[Envelope],
        cause: str,
        *,
        cancelled: bool = False,
    ) -> None:
        """End the saga: Compensated (Cancelled, for a run an operator cancelled), or
        CompensationFailed when any step in `failed`."""
        status = RunStatus.CANCELLED if cancelled else RunStatus.COMPENSATED
        if failed:
            status = RunStatus.COMPENSATION_FAILED
        await self._guarded(
            run_id,
            condition="status = 'Compensating'",
            assignments=("status = $status, failed_compensations = $failed, finished_at = $now"),
            what=f"run {run_id} is not compensating",
            events=events,
            cause=cause,
            variables={"failed": failed, "status": status.value},
        )
