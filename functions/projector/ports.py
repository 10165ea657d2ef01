"""The store operations the projector uses: run views, their history, the event log."""

from __future__ import annotations

from typing import Any, Protocol

from stratum.events import Envelope
from stratum.store import ViewWrite


class ProjectorStore(Protocol):
    async def get_view(self, run_id: str, tenant: str | None = None) -> dict[str, Any] | None: ...

    async def put_views(self, writes: list[ViewWrite]) -> None: ...

    async def all_events(self) -> list[Envelope]: ...

    async def clear_views(self) -> None: ...
