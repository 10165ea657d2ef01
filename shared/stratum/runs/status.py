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
    # an operator asked the run to stop: its stage is being stopped (`stratum.run.cancel`)
    CANCELLING = "Cancelling"
    # a cancelled run ended, what it had done undone (or nothing had run)
    CANCELLED = "Cancelled"
    # a stage failed in a node with `on_failure = "hold"`: the run waits for an operator
    # (`stratum resume`, `stratum cancel`), nothing undone
    HELD = "Held"

    @property
    def rank(self) -> int:
        """Later in a run's life = higher; lets a projection ignore event arrival order."""
        return _RANK[self]


_RANK = {
    RunStatus.ACCEPTED: 0,
    RunStatus.PLANNED: 1,
    RunStatus.RUNNING: 2,
    # within one resumption of a run (a resume starts the next: `stratum.run.resumed`)
    RunStatus.HELD: 3,
    RunStatus.FAILED: 4,
    RunStatus.CANCELLING: 5,
    RunStatus.COMPENSATING: 6,
    RunStatus.SUCCEEDED: 7,
    RunStatus.COMPENSATED: 8,
    RunStatus.CANCELLED: 9,
    RunStatus.COMPENSATION_FAILED: 10,
    RunStatus.DENIED: 11,
}
# a run in one of these has ended: nothing moves it any more
FINAL = frozenset(
    {
        RunStatus.SUCCEEDED,
        RunStatus.FAILED,
        RunStatus.COMPENSATED,
        RunStatus.CANCELLED,
        RunStatus.COMPENSATION_FAILED,
        RunStatus.DENIED,
    }
)
