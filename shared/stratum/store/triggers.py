"""Runs created from publishers' events (accepted or denied) and events rejected as malformed.

Every write that announces something stores the announcing events in the same
transaction (`event` table: the run's log and the outbox); conditional writes THROW the
stale marker when the run is not in the expected state (StaleWriteError to the caller).
"""

from __future__ import annotations

from typing import Any

from stratum.clock import iso, utc_now
from stratum.events import Envelope
from stratum.runs.status import RunStatus
from stratum.store.guarded import RUN, GuardedWrites, event_rows
from stratum.store.read_models import plain_record


class Triggers(GuardedWrites):
    async def accept_run(self, run: dict[str, Any], event: Envelope, cause: str) -> bool:
        """Create the run; False if this (tenant, event id) already has one (the run id is
        derived from both, so the CREATE itself finds the duplicate)."""
        return await self._create_run(run, RunStatus.ACCEPTED, event, cause)

    async def deny_run(self, run: dict[str, Any], event: Envelope, cause: str) -> bool:
        """Create the run already Denied and finished, with its `run.denied` audit event;
        False if this (tenant, event id) already has a run (whatever was decided then)."""
        return await self._create_run(run, RunStatus.DENIED, event, cause)

    async def _create_run(
        self, run: dict[str, Any], status: RunStatus, event: Envelope, cause: str
    ) -> bool:
        now = iso(utc_now())
        record = {
            **run,
            "status": status.value,
            "created_at": now,
            "updated_at": now,
            "version": 1,
            "current_stage": -1,
        }
        try:
            await self.db.transaction(
                f"CREATE {RUN} CONTENT $record RETURN NONE;\n"
                "INSERT IGNORE INTO event $events RETURN NONE;",
                {
                    "run": run["id"],
                    "record": _without_id(record),
                    "events": event_rows([event], cause),
                },
                keys=(run["id"],),
            )
        except Exception as error:
            if "already exists" in str(error) or "already contains" in str(error):
                return False  # a redelivery, or a concurrent instance created it first
            raise
        return True

    async def restore_announcement(
        self, run_id: str, event: Envelope, cause: str, *, status: RunStatus, inputs_hash: str
    ) -> list[Envelope]:
        """Store again the event that created run `run_id` (`run.accepted`, `run.denied`)
        when the run is there without it and has not moved on: what a repeat of its
        trigger announces after a crash kept the run's creation but not the event stored
        with it (seen once, under kill -9, with the embedded engine). Only for the same
        event (`inputs_hash`); what to announce (nothing when the run is not so)."""
        restored = await self.db.transaction(
            f"LET $found = (SELECT status, inputs_hash, current_stage FROM ONLY {RUN});\n"
            "IF $found.status = $status AND $found.inputs_hash = $hash "
            "AND $found.current_stage = -1 "
            "AND count(SELECT id FROM event WHERE cause = $cause) = 0 "
            "{ INSERT IGNORE INTO event $events RETURN NONE; RETURN true; } "
            "ELSE { RETURN false; };",
            {
                "run": run_id,
                "status": status.value,
                "hash": inputs_hash,
                "cause": cause,
                "events": event_rows([event], cause),
            },
            keys=(run_id,),
        )
        return [event] if restored and restored[-1] is True else []

    async def record_rejection(self, rejection: dict[str, Any]) -> None:
        await self.db.query(
            "UPSERT type::thing('rejected_event', $id) CONTENT $record RETURN NONE;",
            {"id": rejection["id"], "record": _without_id(rejection)},
        )

    async def rejections(self, limit: int = 100) -> list[dict[str, Any]]:
        rows = (
            await self.db.query(
                "SELECT * FROM rejected_event ORDER BY at DESC LIMIT $limit;", {"limit": limit}
            )
        )[0]
        return [plain_record(row) for row in rows]


def _without_id(record: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in record.items() if key != "id"}
