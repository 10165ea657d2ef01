"""The store operations the planner uses: plans, rejections and the tenant's queue."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from stratum.events import Envelope
from stratum.store.tenancy import TenantLoad


class QueueStore(Protocol):
    """A tenant's queue of runs waiting for a slot (`queue.RunQueue`)."""

    async def tenant_load(self, tenant: str, run_id: str) -> TenantLoad: ...

    async def queue_run(
        self, run_id: str, reason: str, events: Sequence[Envelope], cause: str
    ) -> None: ...

    async def queue_head(self, tenant: str, limit: int) -> tuple[int, list[str]]: ...

    async def admit_queued(self, run_id: str, events: Sequence[Envelope], cause: str) -> None: ...


class PlannerStore(QueueStore, Protocol):
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
    ) -> None: ...

    async def reject_run(
        self, run_id: str, error: str, events: Sequence[Envelope], cause: str
    ) -> None: ...

    async def last_event_of(
        self, run_id: str, types: Sequence[str]
    ) -> tuple[Envelope, dict[str, str]] | None: ...

    async def events_caused_by(self, cause: str) -> list[Envelope]: ...

    async def get_run(self, run_id: str) -> dict[str, Any] | None: ...

    async def run_state(
        self, run_id: str
    ) -> tuple[dict[str, Any] | None, dict[str, dict[str, Any]], dict[str, Any]]: ...

    async def resume_run(
        self,
        run_id: str,
        *,
        resumption: int,
        graph_version: str,
        stages: Sequence[Sequence[str]],
        stage_links: Sequence[tuple[int, int, list[str]]],
        from_stage: int,
        entry: dict[str, Any],
        events: Sequence[Envelope],
        cause: str,
    ) -> None: ...

    async def record_intervention(self, run_id: str, entry: dict[str, Any]) -> None: ...

    async def cancel_run(
        self,
        run_id: str,
        *,
        seen: str,
        status: str,
        entry: dict[str, Any],
        events: Sequence[Envelope],
        cause: str,
        finished: bool = False,
    ) -> None: ...
