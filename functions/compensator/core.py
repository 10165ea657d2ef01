"""The saga's order, pure: which succeeded nodes to undo, last done first."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

from stratum.events import CompensationRecorded, Envelope, Payload, RunCompensated, follow

SOURCE = "stratum/compensator"
StepStatus = Literal["succeeded", "failed", "skipped"]


def _emit(payload: Payload, cause: Envelope, now: datetime, discriminator: str = "") -> Envelope:
    return follow(payload, cause, source=SOURCE, now=now, discriminator=discriminator)


def undo_order(executions: Mapping[str, Mapping[str, Any]]) -> list[tuple[int, str]]:
    """(stage, node) of every node that succeeded: later stages first, and inside a stage
    reverse lexical order (the mirror of the order the plan lists them in)."""
    done = [
        (int(record["stage"]), node)
        for node, record in executions.items()
        if record.get("status") == "succeeded"
    ]
    return sorted(done, reverse=True)


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
    cause: Envelope,
    order: int,
    stage: int,
    node: str,
    status: StepStatus,
    duration_ms: float,
    error: str | None,
    bundle: str | None,
    now: datetime,
) -> Envelope:
    return _emit(
        CompensationRecorded(
            order=order,
            stage=stage,
            node=node,
            status=status,
            duration_ms=duration_ms,
            error=error,
            bundle=bundle,
        ),
        cause,
        now,
        node,
    )


def compensated(cause: Envelope, steps: Mapping[str, Mapping[str, Any]], now: datetime) -> Envelope:
    done = sorted(node for node, s in steps.items() if s["status"] == "succeeded")
    failed = sorted(node for node, s in steps.items() if s["status"] == "failed")
    return _emit(RunCompensated(compensated=done, failed=failed), cause, now)
