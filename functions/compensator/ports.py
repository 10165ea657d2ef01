"""The store operations the compensator uses: the run's state and its saga's steps."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from stratum.events import Envelope


class CompensatorStore(Protocol):
    async def run_state(
        self, run_id: str
    ) -> tuple[dict[str, Any] | None, dict[str, dict[str, Any]], dict[str, Any]]: ...

    async def compensations(self, run_id: str) -> dict[str, dict[str, Any]]: ...

    async def begin_compensation(self, run_id: str, node: str) -> int: ...

    async def record_compensation(
        self, run_id: str, node: str, record: dict[str, Any], events: Sequence[Envelope], cause: str
    ) -> None: ...

    async def finish_compensation(
        self,
        run_id: str,
        failed: list[str],
        events: Sequence[Envelope],
        cause: str,
        *,
        cancelled: bool = False,
    ) -> None: ...
