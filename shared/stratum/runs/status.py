"""Run statuses and the order they can be reached in."""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    ACCEPTED = "Accepted"
    PLANNED = "Planned"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    COMPENSATING = "Compensating"
    COMPENSATED = "Compensated"
    # the saga ended but some compensate script still failed after its retries: the run's
    # effects are only partly undone (which steps: `failed_compensations`, the steps' errors)
    COMPENSATION_FAILED = "CompensationFailed"
    DENIED = "Denied"

    @property
    def rank(self) -> int:
        """Later in a run's life = higher; lets a projection ignore event arrival order."""
        return _RANK[self]


_RANK = {
    RunStatus.ACCEPTED: 0,
    RunStatus.PLANNED: 1,
    RunStatus.RUNNING: 2,
    RunStatus.FAILED: 3,
    RunStatus.COMPENSATING: 4,
    RunStatus.SUCCEEDED: 5,
    RunStatus.COMPENSATED: 6,
    RunStatus.COMPENSATION_FAILED: 7,
    RunStatus.DENIED: 8,
}
