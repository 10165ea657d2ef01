"""The projector's read models in SurrealDB: run views and the event history."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from stratum.store.database import STALE_MARKER, Database


@dataclass(frozen=True)
class ViewWrite:
    """A run view to store (`doc`), the history rows behind it, and the stored version
    it was based on (None: write whatever is stored)."""

    doc: dict[str, Any]
    items: list[dict[str, Any]]
    expected: int | None


class ReadModels:
    """Reads and writes of `run_view` and `history_item` (mixed into RunStore)."""

    db: Database

    # -- projector ----------------------------------------------------------------------

    async def get_view(self, run_id: str, tenant: str | None = None) -> dict[str, Any] | None:
        """The run's view; with `tenant`, None for another tenant's run (as for no run)."""
        where = " WHERE tenant = $tenant" if tenant else ""
        rows = (
            await self.db.query(
                f"SELECT * FROM type::thing('run_view', $run){where};",
                {"run": run_id, "tenant": tenant},
            )
        )[0]
        return plain_record(rows[0]) if rows else None

    async def put_views(self, writes: list[ViewWrite]) -> None:
        """Store run views and the history rows of the events folded into them, in one
        transaction however many runs they cover. A write with an `expected` version
        only applies if the stored view still has it (else StaleWriteError, and nothing
        of the batch is written); the stored version then moves to expected + 1."""
        stale = f"{STALE_MARKER}: the run view was changed by another writer: "
        await self.db.transaction(
            "FOR $write IN $writes {\n"
            "  LET $view = type::thing('run_view', $write.doc.run_id);\n"
            "  IF $write.expected != NONE "
            "AND ((SELECT VALUE version FROM ONLY $view) ?? 0) != $write.expected "
            f"{{ THROW '{stale}' + $write.doc.run_id }};\n"
            "  UPSERT $view CONTENT $write.doc RETURN NONE;\n"
            "};\n"
            "INSERT IGNORE INTO history_item $items RETURN NONE;",
            {
                "writes": [
                    {
                        "doc": {**write.doc, "version": (write.expected or 0) + 1},
                        "expected": write.expected,
                    }
                    for write in writes
                ],
                "items": [
                    {**item, "run": write.doc["run_id"]} for write in writes for item in write.items
                ],
            },
            keys=[f"view:{write.doc['run_id']}" for write in writes],
        )

    async def history(self, run_id: str, tenant: str | None = None) -> list[dict[str, Any]]:
        """The run's event history; with `tenant`, empty for another tenant's run."""
        mine = " AND type::thing('run_view', $run).tenant = $tenant" if tenant else ""
        rows = (
            await self.db.query(
                f"SELECT time, type, summary, id FROM history_item WHERE run = $run{mine} "
                "ORDER BY time, id;",
                {"run": run_id, "tenant": tenant},
            )
        )[0]
        return [
            {
                "id": str(row["id"].id),
                "time": row["time"],
                "type": row["type"],
                "summary": row["summary"],
            }
            for row in rows
        ]

    async def produced(self, run_id: str) -> list[dict[str, Any]]:
        """Every capability the run's nodes produced (node, capability, value) with the
        bundle of the attempt that produced it: the outputs the run detail shows."""
        values, executions = await self.db.query(
            "SELECT name, producer, value FROM capability WHERE run = $run;\n"
            "SELECT node, bundle FROM node_exec WHERE run = $run;",
            {"run": run_id},
        )
        bundles = {row["node"]: row.get("bundle") for row in executions}
        return [
            {
                "node": row["producer"],
                "capability": row["name"],
                "value": row.get("value"),
                "bundle": bundles.get(row["producer"]),
            }
            for row in values
        ]

    async def count_history(self, run_id: str) -> int:
        rows = (
            await self.db.query(
                "SELECT count() AS n FROM history_item WHERE run = $run GROUP ALL;", {"run": run_id}
            )
        )[0]
        return int(rows[0]["n"]) if rows else 0

    async def list_views(
        self, *, tenant: str | None = None, status: str | None = None, limit: int = 50
    ) -> list[dict[str, Any]]:
        """The newest runs' views; only `tenant`'s, only those in `status`, when given."""
        conditions = [
            c for c, v in (("tenant = $tenant", tenant), ("status = $status", status)) if v
        ]
        where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
        rows = (
            await self.db.query(
                f"SELECT * FROM run_view {where} ORDER BY created_at DESC LIMIT $limit;",
                {"tenant": tenant, "status": status, "limit": limit},
            )
        )[0]
        return [_shown(row) for row in rows]

    async def all_views(self) -> list[dict[str, Any]]:
        """Every view with its history: what a replay must reproduce."""
        rows = (await self.db.query("SELECT * FROM run_view ORDER BY run_id;"))[0]
        return [_shown(row) | {"history": await self.history(row["run_id"])} for row in rows]

    async def clear_views(self) -> None:
        await self.db.query("DELETE run_view; DELETE history_item;")


def _shown(row: dict[str, Any]) -> dict[str, Any]:
    """A view as readers see it: without the write counter (how often it was stored, not
    what it shows)."""
    return {key: value for key, value in plain_record(row).items() if key != "version"}


def plain_record(row: dict[str, Any]) -> dict[str, Any]:
    """A record with its SurrealDB RecordID turned into plain text."""
    out = dict(row)
    record_id = out.pop("id", None)
    if record_id is not None:
        out["_id"] = str(getattr(record_id, "id", record_id))
    return out
