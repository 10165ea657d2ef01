"""The stages this instance is running, so that a cancel heard on the bus stops its run's.

One stage of a run runs at a time (its messages are handled one at a time), so a run has
at most one stop to watch. The stop is watched before the stage begins: a cancel heard
while `begin_stage` is in flight is not missed (that write then finds the run Cancelling,
or the stop is already set when the scripts start).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

from stratum.runs.cancel import CancelOrder


class Stops:
    def __init__(self) -> None:
        self._watched: dict[str, asyncio.Future[CancelOrder]] = {}

    @contextlib.contextmanager
    def watching(self, run_id: str) -> Iterator[asyncio.Future[CancelOrder]]:
        """A future set when the run is cancelled, for as long as the stage runs."""
        stop: asyncio.Future[CancelOrder] = asyncio.get_running_loop().create_future()
        self._watched[run_id] = stop
        try:
            yield stop
        finally:
            if self._watched.get(run_id) is stop:
                del self._watched[run_id]

    def stop(self, run_id: str, order: CancelOrder | None) -> bool:
        """Stop the run's stage if one is running here; whether one was."""
        stop = self._watched.get(run_id)
        if stop is None or stop.done() or order is None:
            return False
        stop.set_result(order)
        return True
