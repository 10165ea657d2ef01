"""One saga step: a node's compensate script, retried per the node's retry policy.

The executor runs a compensate script once per call; the repeats are decided here, so
that a retried compensation is attempt 2, 3, … of the same step with one bundle each.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

from functions.compensator.core import StepLease, Undone
from stratum.executor import CredentialsHook, ExecutionContext, NodeOutcome, run_compensation
from stratum.graph import ActionNode


async def undo(
    node: ActionNode,
    payload: Mapping[str, Any],
    ctx: ExecutionContext,
    first: int = 1,
    credentials: CredentialsHook | None = None,
) -> Undone:
    """Run `node.compensate` until it succeeds, at most `retries.max + 1` times with the
    node's backoff in between, numbered from `first`. Its output is not judged, so only a
    non-zero exit or a timeout fails an attempt; an exit code the node lists as terminal
    stops the retries, as it does for the handler. Each attempt gets the node's secrets
    from `credentials`, under a credential of its own."""
    policy = node.retries
    total = policy.max + 1
    started = time.monotonic()
    outcome: NodeOutcome | None = None
    leases: list[StepLease] = []
    made = 0
    for made in range(1, total + 1):
        delay = policy.delay_before(made)
        if delay > 0:
            await asyncio.sleep(delay)
        outcome = await run_compensation(
            node, payload, ctx, attempt=first + made - 1, credentials=credentials
        )
        leases += [
            StepLease(
                attempt=a.attempt,
                idempotency_key=a.idempotency_key,
                credential_lease=a.credential_lease,
            )
            for a in outcome.attempts
            if a.credential_lease is not None
        ]
        if outcome.status == "succeeded" or not _retryable(outcome):
            break
    assert outcome is not None  # total >= 1
    duration_ms = (time.monotonic() - started) * 1000
    bundle = str(outcome.attempts[-1].bundle) if outcome.attempts else None
    if outcome.status == "succeeded":
        return Undone(
            status="succeeded",
            attempts=made,
            duration_ms=duration_ms,
            bundle=bundle,
            credential_leases=tuple(leases),
        )
    if not _retryable(outcome):
        why = "terminal: not retried"
    else:
        why = f"after {made} attempt{'s' if made > 1 else ''}"
    return Undone(
        status="failed",
        attempts=made,
        duration_ms=duration_ms,
        error=f"{outcome.error} ({why})",
        bundle=bundle,
        credential_leases=tuple(leases),
    )


def _retryable(outcome: NodeOutcome) -> bool:
    return bool(outcome.attempts) and outcome.attempts[-1].retryable
