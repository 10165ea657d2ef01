"""Graph snapshots a run is pinned to, and a run's plan (or its rejection).

Every write that announces something stores the announcing events in the same
transaction (`event` table: the run's log and the outbox); conditional writes THROW the
stale marker when the run is not in the expected state (StaleWriteError to the caller).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from stratum.events import Envelope
from stratum.store.guarded import GuardedWrites
from stratum.store.read_models import plain_record
from stratum.store.tenancy import IN_PROGRESS, admission_sql


def stages_sql(count: int, links: Sequence[tuple[int, int, list[str]]], done: int = 0) -> str:
    """A record per stage of a plan (`$stage_nodes`; the first `done` already Succeeded,
    the rest Pending) and the `feeds` relations between them (capabilities: `$links`)."""
    stage_sql = "\n".join(
        f"UPSERT type::thing('stage', [$run, {index}]) CONTENT {{run: $run, index: {index}, "
        f"nodes: $stage_nodes[{index}], status: '{'Succeeded' if index < done else 'Pending'}'}} "
        "RETURN NONE;"
        for index in range(count)
    )
    link_sql = "\n".join(
        f"RELATE (type::thing('stage', [$run, {src}]))"
        f"->feeds->(type::thing('stage', [$run, {dst}])) "
        f"SET capabilities = $links[{n}] RETURN NONE;"
        for n, (src, dst, _) in enumerate(links)
    )
    return stage_sql + "\n" + link_sql


class Plans(GuardedWrites):
    async def save_graph(self, version: str, snapshot: dict[str, Any]) -> None:
        """Keep every graph version a run was planned with (immutable, so UPSERT is safe)."""
        await self.db.query(
            "UPSERT type::thing('graph', $version) CONTENT $snapshot RETURN NONE;",
            {"version": version, "snapshot": snapshot},
        )

    async def get_graph(self, version: str) -> dict[str, Any] | None:
        rows = (
            await self.db.query(
                "SELECT * FROM type::thing('graph', $version);", {"version": version}
            )
        )[0]
        return plain_record(rows[0]) if rows else None

    async def record_plan(
        self,
        run_id: str,
        *,
        graph_version: str,
        stages: Sequence[Sequence[str]],
        stage_links: Sequence[tuple[int, int, list[str]]],
        events: Sequence[Envelope],
        cause: str,
        tenant: str = "",
        limit: int = 0,
    ) -> None:
        """Store the plan: the run, a record per stage, and `feeds` relations between
        stages (which capabilities flow from one to the next). With a `limit`, only if
        `tenant` has fewer runs in progress or waiting ahead of this one — checked in the
        same transaction (AtLimitError otherwise, nothing written), so admitting a run
        costs no round trip of its own."""
        await self._guarded(
            run_id,
            condition="status = 'Accepted'",
            assignments="status = 'Planned', graph_version = $version, plan = $stage_nodes, "
            "current_stage = 0",
            what=f"run {run_id} is already planned",
            events=events,
            cause=cause,
            extra_sql=stages_sql(len(stages), stage_links),
            before_sql=admission_sql(limit),
            variables={
                "tenant": tenant,
                "busy": IN_PROGRESS,
                "version": graph_version,
                "stage_nodes": [list(stage) for stage in stages],
                "links": [caps for _, _, caps in stage_links],
            },
        )

    async def reject_run(
        self, run_id: str, error: str, events: Sequence[Envelope], cause: str
    ) -> None:
        await self._guarded(
            run_id,
            condition="status = 'Accepted'",
            assignments="status = 'Failed', error = $error, finished_at = $now",
            what=f"run {run_id} is past Accepted",
            events=events,
            cause=cause,
            variables={"error": error},
        )
