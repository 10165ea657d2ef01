"""The stage executor's pure parts: what each node reads, and what is recorded of it."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from stratum.clock import iso
from stratum.events import (
    Envelope,
    NodeFailed,
    NodeStarted,
    NodeSucceeded,
    Payload,
    StageCompleted,
    StageFailed,
    follow,
)
from stratum.executor import NodeOutcome
from stratum.graph import ActionNode

SOURCE = "stratum/stage-executor"


def _emit(payload: Payload, cause: Envelope, now: datetime, discriminator: str = "") -> Envelope:
    return follow(payload, cause, source=SOURCE, now=now, discriminator=discriminator)


def node_payload(
    run: Mapping[str, Any], node: ActionNode, capabilities: Mapping[str, Any]
) -> dict[str, Any]:
    """What the script reads on stdin: the run, the triggering event's data, its inputs."""
    return {
        "run": {"id": run["_id"], "tenant": run["tenant"], "topic": run["topic"]},
        "event": run.get("event_data") or {},
        "inputs": {name: capabilities[name] for name in node.consumes if name in capabilities},
    }


def execution_tag(event_id: str, message_id: str, delivery: int) -> str:
    """What tells apart the events of two executions of one stage command: a redelivery
    (the first holder died or stalled) or a re-publication of the command (stuck-run
    watchdog, dead-letter re-drive) runs its unfinished nodes again, and their new events
    must not be dropped as duplicates of the first execution's."""
    if delivery <= 1 and message_id in ("", event_id):
        return ""
    if message_id in ("", event_id):
        return f"@{delivery}"
    return f"@{delivery}.{hashlib.sha256(message_id.encode()).hexdigest()[:12]}"


def first_attempt(executions: int, retries: int) -> int:
    """The number of a node's first attempt in its `executions`-th execution: each
    execution gets its own block of attempt numbers, so bundles and idempotency keys of
    two executions never collide."""
    return (max(executions, 1) - 1) * (retries + 1) + 1


def started(
    command: Envelope, stage: int, nodes: list[str], now: datetime, tag: str = ""
) -> list[Envelope]:
    return [_emit(NodeStarted(stage=stage, node=node), command, now, node + tag) for node in nodes]


def finished(
    command: Envelope, stage: int, outcome: NodeOutcome, tag: str = ""
) -> tuple[dict[str, Any], Envelope]:
    """The node_exec record and the event for a node's outcome."""
    duration_ms = (outcome.finished_at - outcome.started_at).total_seconds() * 1000
    last = outcome.attempts[-1] if outcome.attempts else None
    bundle = str(last.bundle) if last else None
    record = {
        "status": outcome.status,
        "stage": stage,
        "started_at": iso(outcome.started_at),
        "finished_at": iso(outcome.finished_at),
        "duration_ms": duration_ms,
        "error": outcome.error,
        "outputs_hash": outcome.outputs_hash,
        "bundle": bundle,
        "attempts": [
            {
                "attempt": a.attempt,
                "status": a.status,
                "exit_code": a.exit_code,
                "signal": a.signal,
                "timed_out": a.timed_out,
                "error": a.error,
                "retryable": a.retryable,
                "duration_ms": a.duration_ms,
                "bundle": str(a.bundle),
                "idempotency_key": a.idempotency_key,
                # the id of the credential its secrets came under (audit), never a value
                "credential_lease": a.credential_lease,
            }
            for a in outcome.attempts
        ],
    }
    payload: Payload
    if outcome.status == "succeeded":
        payload = NodeSucceeded(
            stage=stage,
            node=outcome.node_id,
            attempts=len(outcome.attempts),
            duration_ms=duration_ms,
            outputs_hash=outcome.outputs_hash,
            bundle=bundle or "",
        )
    else:
        payload = NodeFailed(
            stage=stage,
            node=outcome.node_id,
            attempts=len(outcome.attempts),
            duration_ms=duration_ms,
            error=outcome.error or outcome.status,
            cancelled=outcome.status == "cancelled",
            bundle=bundle,
        )
    return record, _emit(payload, command, outcome.finished_at, outcome.node_id + tag)


def stage_result(
    command: Envelope, stage: int, nodes: list[str], outcomes: list[NodeOutcome], now: datetime
) -> Envelope:
    """StageCompleted, or StageFailed naming the node(s) whose failure ended it."""
    failed = [o for o in outcomes if o.status == "failed"]
    if not failed:
        return _emit(StageCompleted(stage=stage, nodes=nodes), command, now)
    error = "; ".join(o.error or f"node {o.node_id}: failed" for o in failed)
    return _emit(
        StageFailed(stage=stage, failed=[o.node_id for o in failed], error=error), command, now
    )
