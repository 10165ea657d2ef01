"""Where a pipeline's latency goes, hop by hop along its critical path.

Stratum pipelines run one at a time while a plain NATS subscriber notes when each of the
run's events reaches the bus; the medians of the gaps between them split the latency
into ingest (the trigger to `run.accepted`), the planner (to stage 0's command), and per
stage its start (the command to its nodes' `node.started`: the stage's start stored) and
its run and end (to the next stage's command or the run's end: the scripts, each node's
end, the stage's end stored with what follows)."""

from __future__ import annotations

import statistics
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

# a pipeline that reports its run id and the moment its trigger was published
Traced = Callable[[], Awaitable[tuple[str, float]]]


async def measure(nc: Any, prefix: str, pipeline: Traced, runs: int) -> dict[str, float]:
    """Median milliseconds of each critical-path segment over `runs` pipelines."""
    seen: dict[str, dict[str, float]] = defaultdict(dict)

    async def note(message: Any) -> None:
        event = orjson.loads(message.data)
        kind, data = event["type"].removeprefix("stratum."), event.get("data") or {}
        if kind in ("stage.execute", "node.started"):
            kind += f" {data.get('stage')}"
        seen[event.get("runid", "")].setdefault(kind, time.perf_counter())

    subscription = await nc.subscribe(f"{prefix}.>", cb=note)
    published: dict[str, float] = {}
    try:
        for _ in range(runs):
            run, at = await pipeline()
            published[run] = at
        await nc.flush()
    finally:
        await subscription.unsubscribe()
    gaps: dict[str, list[float]] = defaultdict(list)
    for run, at in published.items():
        times = seen[run] | {"trigger": at}
        stages = sorted(int(k.split()[-1]) for k in times if k.startswith("stage.execute "))
        marks = [
            ("ingest", "trigger", "run.accepted"),
            ("planner", "run.accepted", "stage.execute 0"),
        ]
        for stage in stages:
            after = f"stage.execute {stage + 1}" if stage + 1 in stages else "run.succeeded"
            marks.append(
                (f"stage {stage} start", f"stage.execute {stage}", f"node.started {stage}")
            )
            marks.append((f"stage {stage} run+end", f"node.started {stage}", after))
        for name, start, end in marks:
            if start in times and end in times:
                gaps[name].append((times[end] - times[start]) * 1000)
    return {name: statistics.median(values) for name, values in gaps.items()}


def report(segments: dict[str, float]) -> str:
    parts = " · ".join(f"{name} {ms:.1f}" for name, ms in segments.items())
    return f"critical path (p50 ms)    {parts}  (sum {sum(segments.values()):.1f})"
