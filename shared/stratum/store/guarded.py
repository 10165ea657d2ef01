"""Guarded writes of a run: the one way a state change and its events are stored.

A guarded write updates the run only if `condition` holds, stores the announcing events
in the same transaction (`event` table: the run's log and the outbox), and otherwise
THROWs the stale marker, so the caller sees StaleWriteError and treats the message as
already handled.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from stratum.clock import iso, utc_now
from stratum.events import Envelope
from stratum.store.database import STALE_MARKER, Database
from stratum.telemetry import tracing

RUN = "type::thing('run', $run)"


def event_rows(events: Iterable[Envelope], cause: str) -> list[dict[str, Any]]:
    """Events as `event` rows: what caused them, the exact bytes published (so a
    redelivery re-publishes them unchanged), and the trace they were made in (so what
    is later done for their run, a re-drive, joins that trace)."""
    trace = tracing.current_headers()
    return [
        {
            "id": event.id,
            "run": event.runid,
            "tenant": event.tenant,
            "type": event.type,
            "time": iso(event.time),
            "cause": cause,
            "node": event.data.get("node"),
            "envelope": event.body.decode(),
            "trace": trace,
        }
        for event in events
    ]


def guard(
    condition: str,
    what: str,
    assignments: str,
    *,
    otherwise: Callable[[str], str] | None = None,
) -> str:
    """Update the run (`assignments`) only if `condition` holds; otherwise abort the
    transaction with the stale marker and `what` (or with the statement `otherwise`
    makes of that marker's text, to tell causes apart)."""
    stale = f"{STALE_MARKER}: {what}"
    failing = otherwise(stale) if otherwise is not None else f"THROW '{stale}'"
    return (
        f"LET $changed = (UPDATE {RUN} SET {assignments}, version += 1, updated_at = $now "
        f"WHERE {condition} RETURN VALUE id);\n"
        f"IF array::len($changed) = 0 {{ {failing} }};"
    )


class GuardedWrites:
    """Base of the store mixins that change a run's state."""

    db: Database

    async def _guarded(
        self,
        run_id: str,
        *,
        condition: str,
        assignments: str,
        what: str,
        events: Sequence[Envelope],
        cause: str,
        extra_sql: str = "",
        variables: dict[str, Any] | None = None,
        before_sql: str = "",
    ) -> None:
        sql = before_sql + guard(condition, what, assignments)
        sql += "\n" + extra_sql + "\nINSERT IGNORE INTO event $events RETURN NONE;"
        await self.db.transaction(
            sql,
            {
                "run": run_id,
                "now": iso(utc_now()),
                "events": event_rows(events, cause),
                **(variables or {}),
            },
            keys=(run_id,),
        )
