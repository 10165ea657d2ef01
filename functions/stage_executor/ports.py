"""The store operations the stage executor uses: a stage's start, its nodes' ends, and
the stage's end with what it does to the run (or its stop, for a cancelled run)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from stratum.events import Envelope
from stratum.store import RunChange, StageStart


class StageStore(Protocol):
    async def run_state(
        self, run_id: str
    ) -> tuple[dict[str, Any] | None, dict[str, dict[str, Any]], dict[str, Any]]: ...

    async def cancel_of(self, run_id: str) -> dict[str, Any] | None: ...

    async def stop_stage(
        self,
        run_id: str,
        stage: int,
        *,
        assignments: str,
        events: Sequence[Envelope],
        cause: str,
        error: str,
        resumption: int = 0,
    ) -> None: ...

    async def begin_stage(
        self,
        run_id: str,
        stage: int,
        nodes: Sequence[str],
        started: Sequence[Envelope],
        cause: str,
        lease: str,
        resumption: int = 0,
    ) -> StageStart: ...

    async def finish_node(
        self,
        run_id: str,
        node: str,
        record: dict[str, Any],
        outputs: dict[str, Any],
        events: Sequence[Envelope],
        cause: str,
        lease: str,
    ) -> None: ...

    async def finish_stage(
        self,
        run_id: str,
        stage: int,
        status: str,
        events: Sequence[Envelope],
        cause: str,
        *,
        lease: str,
        last_node: tuple[str, dict[str, Any], dict[str, Any]] | None = None,
        then: RunChange | None = None,
    ) -> None: ...
