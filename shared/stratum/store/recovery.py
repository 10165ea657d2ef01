"""What the watchdog reads and claims: runs quiet for too long in a state they should have left."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from stratum.events import Envelope
from stratum.store.database import STALE_MARKER
from stratum.store.guarded import RUN, GuardedWrites
from stratum.store.read_models import plain_record


class Recovery(GuardedWrites):
    async def quiet_runs(
        self, statuses: Sequence[str], before: str, limit: int = 200
    ) -> list[dict[str, Any]]:
        """Runs in one of `statuses` with nothing recorded since `before` (oldest first)."""
        rows = (
            await self.db.query(
                "SELECT * FROM run WHERE status INSIDE $statuses AND updated_at < $before "
                "ORDER BY updated_at LIMIT $limit;",
                {"statuses": list(statuses), "before": before, "limit": limit},
            )
        )[0]
        return [plain_record(row) for row in rows]

    async def last_event_of(
        self, run_id: str, types: Sequence[str]
    ) -> tuple[Envelope, dict[str, str]] | None:
        """The run's most recent recorded event of one of `types`, with the trace context
        (W3C headers) it was made in."""
        rows = (
            await self.db.query(
                "SELECT envelope, trace, time FROM event WHERE run = $run AND type INSIDE $types "
                "ORDER BY time DESC LIMIT 1;",
                {"run": run_id, "types": list(types)},
            )
        )[0]
        if not rows:
            return None
        return Envelope.from_bytes(rows[0]["envelope"].encode()), dict(rows[0].get("trace") or {})

    async def claim_stuck_run(self, run_id: str, seen_updated_at: str, now: str) -> int:
        """Claim a stuck run for driving: only if it has not moved since it was seen.
        Returns how many times it has been driven again; StaleWriteError if it moved."""
        stale = f"{STALE_MARKER}: run {run_id} moved since it was found stuck"
        results = await self.db.transaction(
            f"LET $changed = (UPDATE {RUN} SET redrives += 1, updated_at = $now "
            "WHERE updated_at = $seen RETURN VALUE redrives);\n"
            f"IF array::len($changed) = 0 {{ THROW '{stale}' }};\n"
            "RETURN $changed[0];",
            {"run": run_id, "seen": seen_updated_at, "now": now},
            keys=(run_id,),
        )
        return int(results[-1])
