"""The saga, pure: what a step and the saga's end announce, which steps are final, and how
a rerun is numbered (which nodes are undone, and in what order: `stratum.runs.saga`)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from stratum.events import (
    CompensationRecorded,
    Envelope,
    Payload,
    RunCancelled,
    RunCompensated,
    follow,
)
from stratum.runs.cancel import CancelOrder

SOURCE = "stratum/compensator"
StepStatus = Literal["succeeded", "failed", "skipped"]
# how a step can end; a step in the store with another status ("running") has not ended
ENDED: frozenset[str] = frozenset({"succeeded", "failed", "skipped"})


class StepLease(BaseModel):
    """The credential one attempt of a compensate script read its node's secrets with:
    its lease id (the token's accessor), never the token or a value."""

    model_config = ConfigDict(frozen=True)

    attempt: int
    idempotency_key: str
    credential_lease: str


class Undone(BaseModel):
    """How one step ended, after every attempt its node's retry policy allowed.
    `credential_leases` (for the audit, not the event) names each attempt's credential."""

    model_config = ConfigDict(frozen=True)

    status: StepStatus
    attempts: int
    duration_ms: float
    error: str | None = None
    bundle: str | None = None
    credential_leases: tuple[StepLease, ...] = ()


def _emit(payload: Payload, cause: Envelope, now: datetime, discriminator: str = "") -> Envelope:
    return follow(payload, cause, source=SOURCE, now=now, discriminator=discriminator)


def ended(steps: Mapping[str, Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """The steps that ended: a redelivery never runs them again (a failed one had all the
    attempts its retry policy allows)."""
    return {node: step for node, step in steps.items() if step.get("status") in ENDED}


def first_attempt(executions: int, retries: int) -> int:
    """The number of a step's first attempt in its `executions`-th execution: each gets a
    block of `retries + 1` numbers, so a step run again after a crash never reuses the
    bundle or idempotency key of an attempt the crash cut short."""
    return (max(executions, 1) - 1) * (retries + 1) + 1


def compensation_payload(
    run: Mapping[str, Any],
    consumes: tuple[str, ...],
    produces: tuple[str, ...],
    capabilities: Mapping[str, Any],
) -> dict[str, Any]:
    """A compensate script sees what its node saw, plus what the node produced."""
    return {
        "run": {"id": run["_id"], "tenant": run["tenant"], "topic": run["topic"]},
        "event": run.get("event_data") or {},
        "inputs": {name: capabilities[name] for name in consumes if name in capabilities},
        "outputs": {name: capabilities[name] for name in produces if name in capabilities},
    }


def step(
    cause: Envelope, order: int, stage: int, node: str, done: Undone, now: datetime
) -> Envelope:
    return _emit(
        CompensationRecorded(
            order=order, stage=stage, node=node, **done.model_dump(exclude={"credential_leases"})
        ),
        cause,
        now,
        node,
    )


def compensated(
    cause: Envelope,
    steps: Mapping[str, Mapping[str, Any]],
    now: datetime,
    cancel: CancelOrder | None = None,
) -> Envelope:
    """The saga's end: `run.compensated`, or `run.cancelled` for a run an operator
    cancelled (`cancel`); a non-empty `failed` makes the run CompensationFailed."""
    done = sorted(node for node, s in steps.items() if s["status"] == "succeeded")
    failed = sorted(node for node, s in steps.items() if s["status"] == "failed")
    if cancel is not None:
        ended = RunCancelled(
            actor=cancel.actor, reason=cancel.reason, compensated=done, failed=failed
        )
        return _emit(ended, cause, now)
    return _emit(RunCompensated(compensated=done, failed=failed), cause, now)
