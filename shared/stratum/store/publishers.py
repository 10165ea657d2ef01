"""Registered publishers: who may emit events for which tenant (public keys only)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from stratum.store.database import Database, StoreError
from stratum.store.read_models import plain_record


class PublisherRecord(BaseModel):
    """A publisher identity. Only the public NKey is kept; the seed was shown once."""

    model_config = ConfigDict(frozen=True)

    name: str
    tenant: str
    public_key: str
    created_at: str
    revoked_at: str | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


class Publishers:
    """Reads and writes of the `publisher` table (mixed into RunStore)."""

    db: Database

    async def add_publisher(self, record: PublisherRecord) -> None:
        """StoreError if the name is taken (a revoked name stays taken: audit trails name
        publishers, so a name means one key forever)."""
        try:
            await self.db.query(
                "CREATE type::thing('publisher', $name) CONTENT $record RETURN NONE;",
                {"name": record.name, "record": record.model_dump()},
            )
        except StoreError as error:
            if "already exists" in str(error):
                raise StoreError(f"publisher {record.name} already exists") from None
            raise

    async def publishers(self, tenant: str | None = None) -> list[PublisherRecord]:
        where = "WHERE tenant = $tenant " if tenant else ""
        rows = (
            await self.db.query(
                f"SELECT * FROM publisher {where}ORDER BY tenant, name;", {"tenant": tenant}
            )
        )[0]
        return [_record(row) for row in rows]

    async def publisher_by_key(self, public_key: str) -> PublisherRecord | None:
        rows = (
            await self.db.query(
                "SELECT * FROM publisher WHERE public_key = $key LIMIT 1;", {"key": public_key}
            )
        )[0]
        return _record(rows[0]) if rows else None

    async def revoke_publisher(self, name: str, now: str) -> PublisherRecord | None:
        """Revoke (idempotent); None if no such publisher."""
        rows = (
            await self.db.query(
                "UPDATE type::thing('publisher', $name) SET revoked_at = revoked_at ?? $now "
                "RETURN AFTER;",
                {"name": name, "now": now},
            )
        )[0]
        return _record(rows[0]) if rows else None


def _record(row: dict[str, Any]) -> PublisherRecord:
    return PublisherRecord.model_validate(
        {k: v for k, v in plain_record(row).items() if k != "_id"}
    )
