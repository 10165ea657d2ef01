"""The projector's read models in SurrealDB: run views and the event history."""

from __future__ import annotations

from typing import Any

from stratum.store.database import Database


class ReadModels:
    """Reads and writes of `run_view` and `history_item` (mixed into RunStore)."""

    db: Database

    # -- projector ----------------------------------------------------------------------

    async def get_view(self, run_id: str) -> dict[str, Any] | None:
        rows = (
            await self.db.query("SELECT * FROM type::thing('run_view', $run);", {"run": run_id})
        )[0]
        return plain_record(rows[0]) if rows else None

    async def put_views(self, views: list[tuple[dict[str, Any], list[dict[str, Any]]]]) -> None:
        """Store run views and the history rows of the events folded into them, in one
        transaction however many runs they cover."""
        await self.db.transaction(
            "FOR $view IN $views { UPSERT type::thing('run_view', $view.run_id) CONTENT $view "
            "RETURN NONE; };\n"
            "INSERT IGNORE INTO history_item $items RETURN NONE;",
            {
                "views": [view for view, _ in views],
                "items": [
                    {**item, "run": view["run_id"]} for view, items in views for item in items
                ],
            },
        )

    async def history(self, run_id: str) -> list[dict[str, Any]]:
        rows = (
            await self.db.query(
                "SELECT time, type, summary, id FROM history_item WHERE run = $run "
                "ORDER BY time, id;",
                {"run": run_id},
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

    async def count_history(self, run_id: str) -> int:
        rows = (
            await self.db.query(
                "SELECT count() AS n FROM history_item WHERE run = $run GROUP ALL;", {"run": run_id}
            )
        )[0]
        return int(rows[0]["n"]) if rows else 0

    async def list_views(
        self, *, tenant: str | None = None, limit: int = 50
    ) -> list[dict[str, Any]]:
        where = "WHERE tenant = $tenant" if tenant else ""
        rows = (
            await self.db.query(
                f"SELECT * FROM run_view {where} ORDER BY created_at DESC LIMIT $limit;",
                {"tenant": tenant, "limit": limit},
            )
        )[0]
        return [plain_record(row) for row in rows]

    async def all_views(self) -> list[dict[str, Any]]:
        """Every view with its history: what a replay must reproduce."""
        rows = (await self.db.query("SELECT * FROM run_view ORDER BY run_id;"))[0]
        return [plain_record(row) | {"history": await self.history(row["run_id"])} for row in rows]

    async def clear_views(self) -> None:
        await self.db.query("DELETE run_view; DELETE history_item;")


def plain_record(row: dict[str, Any]) -> dict[str, Any]:
    """A record with its SurrealDB RecordID turned into plain text."""
    out = dict(row)
    record_id = out.pop("id", None)
    if record_id is not None:
        out["_id"] = str(getattr(record_id, "id", record_id))
    return out
