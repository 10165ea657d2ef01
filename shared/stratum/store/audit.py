"""The audit trail's reads: runs in (created_at, run id) order, with their nodes' attempts."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

from stratum.store.database import Database
from stratum.store.read_models import plain_record
from stratum.trust.audit import AuditRecord, record_of

PAGE = 500


class AuditTrail:
    """Reads of `run`, `node_exec` and `compensation` for the audit trail (mixed into
    RunStore)."""

    db: Database

    async def audit_records(
        self, *, tenant: str | None = None, since: str | None = None, page: int = PAGE
    ) -> AsyncIterator[AuditRecord]:
        """Every run's audit record, oldest first; only `tenant`'s when given, only those
        created at or after `since` (ISO 8601 UTC) when given. Pages by key (the last
        (created_at, id) seen), so runs created meanwhile never shift or repeat a page."""
        after: tuple[str, str] | None = None
        while True:
            records = await self.audit_page(tenant=tenant, since=since, after=after, limit=page)
            for record in records:
                yield record
            if len(records) < page:
                return
            after = (records[-1].timestamp, records[-1].run_id)

    async def audit_page(
        self,
        *,
        tenant: str | None,
        since: str | None,
        after: tuple[str, str] | None,
        limit: int,
    ) -> list[AuditRecord]:
        """One page of audit records, in order, after the run `after` = (created_at, id)."""
        conditions = []
        if tenant is not None:
            conditions.append("tenant = $tenant")
        if since is not None:
            conditions.append("created_at >= $since")
        if after is not None:
            conditions.append(
                "(created_at > $after_at OR "
                "(created_at = $after_at AND id > type::thing('run', $after_id)))"
            )
        where = f"WHERE {' AND '.join(conditions)} " if conditions else ""
        rows = (
            await self.db.query(
                # the trigger's data and the plan are not audit facts (hashes stand for them)
                f"SELECT * OMIT event_data, plan FROM run {where}"
                "ORDER BY created_at, id LIMIT $limit;",
                {
                    "tenant": tenant,
                    "since": since,
                    "after_at": after[0] if after else None,
                    "after_id": after[1] if after else None,
                    "limit": limit,
                },
            )
        )[0]
        runs = [plain_record(row) for row in rows]
        if not runs:
            return []
        ids = [run["_id"] for run in runs]
        executions, compensations = await self.db.query(
            "SELECT run, node, attempts FROM node_exec WHERE run INSIDE $runs;\n"
            # a compensation keeps its attempts' leases apart (`attempts` is a count there)
            "SELECT run, node, credential_leases AS attempts FROM compensation "
            "WHERE run INSIDE $runs;",
            {"runs": ids},
        )
        by_run = _by_run(executions), _by_run(compensations)
        return [record_of(run, by_run[0][run["_id"]], by_run[1][run["_id"]]) for run in runs]


def _by_run(rows: list[dict[str, Any]]) -> defaultdict[str, list[dict[str, Any]]]:
    grouped: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        grouped[str(row["run"])].append(row)
    return grouped
