"""Running a stage: its nodes in parallel, stopping all of them at the first failure, or
when the caller says stop (the run is being cancelled).

Once one node has failed the stage has failed (the saga will compensate), so letting the
siblings run on would only waste time and add side effects to undo.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from stratum.graph.model import ActionNode

from .credentials import CredentialsHook
from .models import ExecutionContext, NodeOutcome, StageOutcome
from .node import NodeRun, OnAttempt
from .validate import validators_for

OnNodeDone = Callable[[NodeOutcome], Awaitable[None]]


class _NodeFailedError(Exception):
    """Raised inside the task group so that it cancels the siblings."""


class _StoppedError(Exception):
    """Raised inside the task group when the caller's `stop` resolved: it cancels all."""


async def run_stage(
    nodes: Sequence[ActionNode],
    payloads: Mapping[str, Mapping[str, Any]],
    schemas: Mapping[str, Mapping[str, Any]],
    ctx: ExecutionContext,
    *,
    on_attempt: OnAttempt | None = None,
    on_node_done: OnNodeDone | None = None,
    first_attempts: Mapping[str, int] | None = None,
    credentials: CredentialsHook | None = None,
    stop: asyncio.Future[str] | None = None,
) -> StageOutcome:
    """Run `nodes` concurrently (`payloads` by node id); the first failure cancels the rest.

    Cancelled siblings have their process groups killed and end "cancelled". If this call
    itself is cancelled, every node's processes are killed before the cancellation
    propagates. Errors that are not node failures are re-raised as themselves:
    `DefinitionError` (a produced capability without a valid schema; checked before any
    node starts) and `DependencyUnavailableError` (nu cannot be started).

    `on_node_done` is awaited with each node's final outcome as soon as it is known (the
    caller persists it then, not at the end of the stage); cancelled siblings are reported
    after the stage has stopped.

    `first_attempts` (node id -> number, 1 when absent) continues the attempt numbering of
    nodes that already ran in an earlier delivery of this stage (see `run_node`).

    `credentials` gives each attempt of a node that declares secrets its own short-lived
    credential (see `stratum.executor.credentials`).

    `stop`, when it resolves (with why), cancels every node still running as a failure
    would; their outcomes say why. The future itself is never cancelled here.
    """
    ordered = sorted(nodes, key=lambda n: n.id)
    ids = [n.id for n in ordered]
    if len(set(ids)) != len(ids):
        raise ValueError(f"stage {ctx.stage}: duplicate node ids in {ids}")
    missing = [i for i in ids if i not in payloads]
    if missing:
        raise ValueError(f"stage {ctx.stage}: no payload for {', '.join(missing)}")
    firsts = {i: (first_attempts or {}).get(i, 1) for i in ids}
    bad = [i for i, first in firsts.items() if first < 1]
    if bad:  # before any node starts: a sibling must not run on a caller's bug
        raise ValueError(f"stage {ctx.stage}: first attempt below 1 for {', '.join(bad)}")
    for n in ordered:  # a graph bug must surface before any script has side effects
        validators_for(n.id, n.produces, schemas)

    started_at = datetime.now(UTC)
    runs = {n.id: NodeRun(n, ctx, on_attempt, credentials) for n in ordered}
    done: dict[str, NodeOutcome] = {}
    first_failure: list[str] = []
    reports: list[asyncio.Future[None]] = []

    async def one(node: ActionNode) -> None:
        outcome = await runs[node.id].handler(payloads[node.id], schemas, firsts[node.id])
        done[node.id] = outcome
        if on_node_done is not None:
            # shielded: a sibling's failure must not cut the recording of this outcome short
            report = asyncio.ensure_future(on_node_done(outcome))
            reports.append(report)
            await asyncio.shield(report)
        if outcome.status == "failed":
            first_failure.append(node.id)
            raise _NodeFailedError(node.id)

    stopped: list[str] = []
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [
                group.create_task(one(node), name=f"stratum-node-{node.id}") for node in ordered
            ]
            if stop is not None:
                await _until_stopped(tasks, stop, stopped)
    except BaseExceptionGroup as errors:
        _, other = errors.split((_NodeFailedError, _StoppedError))
        if other is not None:
            raise (other.exceptions[0] if len(other.exceptions) == 1 else other) from None

    await asyncio.gather(*reports)
    why = stopped[0] if stopped else f"{first_failure[0] if first_failure else '?'} failed"
    outcomes = []
    for i in ids:
        outcome = done.get(i)
        if outcome is None:
            outcome = runs[i].outcome("cancelled", error=f"node {i}: cancelled: {why}")
            if on_node_done is not None:
                await on_node_done(outcome)
        outcomes.append(outcome)
    return StageOutcome(
        stage=ctx.stage,
        nodes=outcomes,
        failed=any(o.status != "succeeded" for o in outcomes),
        started_at=started_at,
        finished_at=datetime.now(UTC),
    )


async def _until_stopped(
    tasks: Sequence[asyncio.Task[None]], stop: asyncio.Future[str], stopped: list[str]
) -> None:
    """Wait for the nodes; if `stop` resolves first, say why in `stopped` and raise
    _StoppedError so the task group cancels them."""
    every = asyncio.ensure_future(asyncio.wait(tasks))
    try:
        either: list[asyncio.Future[Any]] = [every, stop]
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
    finally:
        every.cancel()
    if stop.done() and not stop.cancelled() and not all(task.done() for task in tasks):
        stopped.append(stop.result())
        raise _StoppedError(stopped[0])
