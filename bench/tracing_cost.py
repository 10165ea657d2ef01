"""What tracing costs a Stratum pipeline: off (the default no-op tracer) against on (an SDK
TracerProvider whose BatchSpanProcessor exports OTLP/HTTP protobuf to `bench.otlp_sink`,
a local collector stand-in in its own process), on the same in-process server.

Off and on alternate pipeline by pipeline for latency (which one goes first alternates
too) and round by round for throughput. After each pipeline, outside the timed part, the
spans are flushed and the bus settles, so one side's export or leftover work does not land
in the other's timing: latency shows what recording spans costs a run in-line, and
throughput (whose rounds include the final flush) what recording and exporting cost.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import time
import urllib.request
from dataclasses import asdict
from pathlib import Path
from types import TracebackType
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from bench.measure import Pipeline, busy_seconds, latencies, pct
from bench.otlp_sink import Stats
from stratum.telemetry import tracing

ROOT = Path(__file__).resolve().parent.parent
SETTLE_S = 0.05  # after a pipeline, for the projector's last messages to be handled
ROUNDS = 4


def check_environment() -> None:
    """`off` must be the default no-op tracer: refuse when OTEL_* turns tracing on."""
    wanted = tracing.exporters_wanted(os.environ)
    if wanted:
        raise SystemExit(
            f"the tracing comparison needs tracing off by default, but OTEL_* asks for "
            f"{', '.join(wanted)}; unset OTEL_TRACES_EXPORTER / OTEL_EXPORTER_OTLP_*_ENDPOINT "
            f"or pass --no-tracing"
        )


class Sink:
    """`python -m bench.otlp_sink` on a free loopback port, for the length of a `with`."""

    port = 0
    process: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> Sink:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.otlp_sink",
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
        )
        assert self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), 30)
        if not line.strip():
            raise RuntimeError("the OTLP sink did not start")
        self.port = int(line)
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            await self.process.wait()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/traces"

    async def stats(self) -> Stats:
        def get() -> Stats:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/stats", timeout=10) as r:
                return Stats(**json.loads(r.read()))

        return await asyncio.to_thread(get)


def off_microseconds_per_span(samples: int = 20_000, repeats: int = 5) -> float:
    """What one span costs with tracing off (the default no-op tracer), in µs: a hop's
    consumer span (the incoming `traceparent` extracted) and producer span (injected),
    timed in a tight loop, median of `repeats`. Times the spans a traced run records
    gives what "off" adds to a run at most."""
    tracing.use(trace.get_tracer_provider())
    incoming = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(samples):
            with tracing.processing("s", incoming, group="g", message_id="m"):
                outgoing: dict[str, str] = {}
                with tracing.publishing("s", outgoing, "m"):
                    pass
        timings.append((time.perf_counter() - start) / (2 * samples) * 1e6)
    return statistics.median(timings)


def exporting_provider(endpoint: str) -> TracerProvider:
    """What `OTEL_TRACES_EXPORTER=otlp OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf` installs."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": "stratum"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    return provider


class Switch:
    """Runs the pipeline with tracing off or on; `on` flushes its spans when asked."""

    def __init__(self, pipeline: Pipeline, on: TracerProvider) -> None:
        # the global provider is the API's proxy (check_environment): `use`-ing it gives
        # back the very tracer Stratum starts with, the no-op default
        self.off: trace.TracerProvider = trace.get_tracer_provider()
        self.on, self.pipeline = on, pipeline

    def use(self, traced: bool) -> None:
        tracing.use(self.on if traced else self.off)

    async def flush(self) -> None:
        if not await asyncio.to_thread(self.on.force_flush, 30_000):
            raise RuntimeError("spans were not exported within 30 s")

    async def latency(self, traced: bool) -> float:
        self.use(traced)
        [ms] = await latencies(self.pipeline, 1)
        if traced:
            await self.flush()
        await asyncio.sleep(SETTLE_S)
        return ms

    async def round_seconds(self, traced: bool, total: int, concurrent: int) -> float:
        self.use(traced)
        seconds = await busy_seconds(self.pipeline, total, concurrent)
        if traced:  # the on side pays for exporting what it recorded
            start = asyncio.get_running_loop().time()
            await self.flush()
            seconds += asyncio.get_running_loop().time() - start
        await asyncio.sleep(SETTLE_S)
        return seconds


async def compare(pipeline: Pipeline, runs: int, batch: int, concurrent: int) -> dict[str, Any]:
    async with Sink() as sink:
        provider = exporting_provider(sink.endpoint)
        switch = Switch(pipeline, provider)
        try:
            for traced in (False, True, False, True):  # warm up the exporter's connection
                await switch.latency(traced)
            before = await sink.stats()
            off_ms: list[float] = []
            on_ms: list[float] = []
            for i in range(runs):
                for traced in (False, True) if i % 2 == 0 else (True, False):
                    (on_ms if traced else off_ms).append(await switch.latency(traced))
            after_latency = await sink.stats()
            per_round = max(batch // ROUNDS, concurrent)
            off_s = on_s = 0.0
            for i in range(ROUNDS):
                for traced in (False, True) if i % 2 == 0 else (True, False):
                    seconds = await switch.round_seconds(traced, per_round, concurrent)
                    if traced:
                        on_s += seconds
                    else:
                        off_s += seconds
            after = await sink.stats()
        finally:
            switch.use(False)
            provider.shutdown()
    total = per_round * ROUNDS
    off_us = off_microseconds_per_span()
    off = {"p50": pct(off_ms, 0.5), "p95": pct(off_ms, 0.95)}
    on = {"p50": pct(on_ms, 0.5), "p95": pct(on_ms, 0.95)}
    in_latency = after_latency.since(before)
    return {
        "runs": runs,
        "concurrent": concurrent,
        "batch": total,
        "off_ms": off,
        "on_ms": on,
        "cost_ms": {q: on[q] - off[q] for q in off},
        "cost_pct": {q: (on[q] / off[q] - 1) * 100 for q in off},
        "pipelines_per_s": {"off": total / off_s, "on": total / on_s},
        "throughput_change_pct": (off_s / on_s - 1) * 100,
        # all spans exported / pipelines run traced (background work, e.g. the watchdog's
        # transactions, shows as traces of its own in `roots`)
        "spans_per_run": in_latency.spans / runs,
        "spans_per_run_concurrent": after.since(after_latency).spans / total,
        "exported": asdict(after.since(before)),
        "runs_traced": runs + total,
        "off_us_per_span": off_us,
        "off_ms_per_run": off_us * in_latency.spans / runs / 1000,
    }


def report(result: dict[str, Any]) -> str:
    off, on, ms, rel = result["off_ms"], result["on_ms"], result["cost_ms"], result["cost_pct"]
    pps, out = result["pipelines_per_s"], result["exported"]
    roots = ", ".join(
        f"{name} {n}" for name, n in sorted(out["roots"].items(), key=lambda item: -item[1])
    )
    return "\n".join(
        [
            "tracing off vs on     (on: SDK provider, BatchSpanProcessor, OTLP/HTTP protobuf"
            " to a loopback sink)",
            f"latency per pipeline  off p50 {off['p50']:.1f} ms  p95 {off['p95']:.1f} ms",
            f"                      on  p50 {on['p50']:.1f} ms  p95 {on['p95']:.1f} ms",
            f"                      on - off  p50 {ms['p50']:+.1f} ms ({rel['p50']:+.1f}%)"
            f"  p95 {ms['p95']:+.1f} ms ({rel['p95']:+.1f}%)",
            f"pipelines/s at {result['concurrent']:<2}     off {pps['off']:.1f}"
            f"  on {pps['on']:.1f}  ({result['throughput_change_pct']:+.1f}%)",
            f"spans exported        {result['spans_per_run']:.1f} per run"
            f" ({result['spans_per_run_concurrent']:.1f} at {result['concurrent']});"
            f" {out['spans']} spans in {out['requests']} requests, {out['bytes'] / 1024:.0f} KiB",
            f"traces exported       {out['traces']} for {result['runs_traced']} runs traced;"
            f" roots: {roots}",
            f"off, the no-op path   {result['off_us_per_span']:.2f} µs per span ="
            f" {result['off_ms_per_run']:.3f} ms per run"
            f" ({result['off_ms_per_run'] / off['p50'] * 100:.2f}% of p50 off)",
        ]
    )
