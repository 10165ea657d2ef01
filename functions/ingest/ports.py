"""The store operations ingest uses: what a trigger's decision reads and records."""

from __future__ import annotations

from typing import Any, Protocol

from stratum.events import Envelope
from stratum.runs.status import RunStatus
from stratum.store import PublisherRecord


class IngestStore(Protocol):
    async def publisher_by_key(self, public_key: str) -> PublisherRecord | None: ...

    async def accept_run(self, run: dict[str, Any], event: Envelope, cause: str) -> bool: ...

    async def deny_run(self, run: dict[str, Any], event: Envelope, cause: str) -> bool: ...

    async def record_rejection(self, rejection: dict[str, Any]) -> None: ...

    async def events_caused_by(self, cause: str) -> list[Envelope]: ...

    async def restore_announcement(
        self, run_id: str, event: Envelope, cause: str, *, status: RunStatus, inputs_hash: str
    ) -> list[Envelope]: ...
