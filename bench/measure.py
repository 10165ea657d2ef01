"""Timing helpers shared by the benches: a pipeline is an async call that runs one to its end."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

Pipeline = Callable[[], Awaitable[None]]


async def latencies(pipeline: Pipeline, runs: int) -> list[float]:
    """Milliseconds per pipeline, run one after another."""
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        await pipeline()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


async def busy_seconds(pipeline: Pipeline, total: int, concurrent: int) -> float:
    """Seconds to run `total` pipelines with at most `concurrent` at a time."""
    semaphore = asyncio.Semaphore(concurrent)

    async def one() -> None:
        async with semaphore:
            await pipeline()

    start = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(total)))
    return time.perf_counter() - start


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]
