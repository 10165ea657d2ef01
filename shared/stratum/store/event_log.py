"""The run's record and its event log: what a message caused (a redelivery re-announces
it), and every event of a run.
"""

from __future__ import annotations

from typing import Any

from stratum.events import Envelope
from stratum.store.guarded import RUN, GuardedWrites
from stratum.store.read_models import plain_record


class EventLog(GuardedWrites):
    async def get_run(self, run_id: str) -> dict[str, Any] | None:
        rows = (await self.db.query(f"SELECT * FROM {RUN};", {"run": run_id}))[0]
        return plain_record(rows[0]) if rows else None

    async def events_caused_by(self, cause: str) -> list[Envelope]:
        """Events already recorded for a message: what a redelivery must re-publish."""
        rows = (
            await self.db.query(
                "SELECT envelope, time FROM event WHERE cause = $cause ORDER BY time;",
                {"cause": cause},
            )
        )[0]
        return [Envelope.from_bytes(row["envelope"].encode()) for row in rows]

    async def count_run_events(self, run_id: str) -> int:
        rows = (
            await self.db.query(
                "SELECT count() AS n FROM event WHERE run = $run GROUP ALL;", {"run": run_id}
            )
        )[0]
        return int(rows[0]["n"]) if rows else 0

    async def all_events(self) -> list[Envelope]:
        rows = (await self.db.query("SELECT envelope, time FROM event ORDER BY time;"))[0]
        return [Envelope.from_bytes(row["envelope"].encode()) for row in rows]
