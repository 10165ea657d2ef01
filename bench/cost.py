"""What a Stratum pipeline costs besides its wall time: database transactions, events,
and CPU by process, counted over Stratum pipelines alone (one at a time, then N
concurrent) from a quiet bus to a quiet bus, and divided by the pipelines run.

- transactions: `stratum_db_transactions_total` (every SurrealDB round trip, write or read).
- events: `stratum_events_published_total` (what the functions published), and from
  nats-server what its streams stored (the bench's trigger event included, a duplicate
  dropped) and what it delivered to the functions' durable consumers (redeliveries too).
- CPU: this process's threads from /proc/self/task/<tid>/schedstat, split into the
  interpreter's (every `threading` thread: the event loop and its helpers; the bench's
  own publish-and-wait is a sliver of it) and the rest, the embedded SurrealDB engine's
  native threads (`tokio-runtime-w`, `surrealdb-threa`, `surrealkv-commi`, unnamed
  ones); a thread gone before the end counts on the Python side. nats-server is a child
  process (/proc/<pid>/stat); the nu scripts are the children reaped meanwhile
  (`RUSAGE_CHILDREN`: nats-server is not reaped until the server stops).
"""

from __future__ import annotations

import asyncio
import os
import resource
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.measure import Pipeline, busy_seconds, latencies
from stratum.telemetry.metrics import REGISTRY

PROC = Path("/proc")
TICK_NS = 1_000_000_000 // os.sysconf("SC_CLK_TCK")
SETTLE_TIMEOUT_S = 60.0
POLL_S = 0.02


@dataclass(frozen=True)
class Cpu:
    """CPU time so far, in ns: this process, its live native threads, nats-server, and
    the children reaped."""

    process: int
    native: dict[int, tuple[str, int]]  # tid -> (comm, ns), threads `threading` does not know
    nats: int
    children: int


@dataclass(frozen=True)
class Counts:
    """Counters so far: Stratum's (this process) and nats-server's (its streams)."""

    writes: float
    reads: float
    published: float
    stored: int
    delivered: int


def stat_cpu_ns(text: str) -> int:
    """utime + stime of a /proc/<pid>/stat line, in ns (the name in parentheses may hold
    spaces and parentheses: the fields start after the last `)`)."""
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) * TICK_NS


def stat_ppid_and_name(text: str) -> tuple[int, str]:
    """(parent pid, name) of a /proc/<pid>/stat line."""
    end = text.rindex(")")
    return int(text[end + 2 :].split()[1]), text[text.index("(") + 1 : end]


def child_named(name: str) -> int:
    """Pid of this process's child called `name` (the nats-server that Stratum started)."""
    me = os.getpid()
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid, comm = stat_ppid_and_name((entry / "stat").read_text())
        except (OSError, ValueError):
            continue  # gone meanwhile, or not readable
        if ppid == me and comm == name:
            return int(entry.name)
    raise RuntimeError(f"no child process named {name} under pid {me}")


def native_threads() -> dict[int, tuple[str, int]]:
    """This process's threads that `threading` does not know, with their CPU ns so far."""
    python = {t.native_id for t in threading.enumerate()}
    threads: dict[int, tuple[str, int]] = {}
    for task in (PROC / "self" / "task").iterdir():
        tid = int(task.name)
        if tid in python:
            continue
        try:
            ns = int((task / "schedstat").read_text().split()[0])
            comm = (task / "comm").read_text().strip()
        except OSError:
            continue  # it ended meanwhile
        threads[tid] = (comm, ns)
    return threads


def sample_cpu(nats_pid: int) -> Cpu:
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return Cpu(
        process=time.process_time_ns(),
        native=native_threads(),
        nats=stat_cpu_ns((PROC / str(nats_pid) / "stat").read_text()),
        children=round((children.ru_utime + children.ru_stime) * 1e9),
    )


def cpu_per_pipeline(before: Cpu, after: Cpu, pipelines: int) -> dict[str, Any]:
    """ms per pipeline by process: python, surrealdb (the engine's threads), nats-server,
    nu; `stratum` is the first three, and `surrealdb_threads` splits the engine by name."""
    by_name: dict[str, int] = {}
    for tid, (comm, ns) in after.native.items():
        by_name[comm] = by_name.get(comm, 0) + ns - before.native.get(tid, (comm, 0))[1]
    engine = sum(by_name.values())

    def ms(ns: float) -> float:
        return ns / 1e6 / pipelines

    python = after.process - before.process - engine
    stratum = python + engine + after.nats - before.nats
    return {
        "python": ms(python),
        "surrealdb": ms(engine),
        "nats-server": ms(after.nats - before.nats),
        "nu": ms(after.children - before.children),
        "stratum": ms(stratum),
        "surrealdb_threads": {name: ms(ns) for name, ns in sorted(by_name.items()) if ns},
    }


def counter_total(name: str, **labels: str) -> float:
    """Sum of a counter's `_total` samples matching `labels`, as /metrics shows them."""
    return sum(
        sample.value
        for family in REGISTRY.collect()
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


class Bus:
    """nats-server's side of the count: the streams' stored messages, the deliveries to
    their consumers, and whether anything is still pending."""

    def __init__(self, jetstream: Any, streams: list[str]) -> None:
        self.js, self.streams = jetstream, streams

    async def _consumers(self) -> list[Any]:
        return [info for s in self.streams for info in await self.js.consumers_info(s)]

    async def settle(self) -> None:
        """Wait until every consumer has nothing left to deliver and nothing unacked:
        the pipelines' trailing work (the projector's last writes) is done."""
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        while any(c.num_pending or c.num_ack_pending for c in await self._consumers()):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the bus did not settle within {SETTLE_TIMEOUT_S:.0f} s")
            await asyncio.sleep(POLL_S)

    async def counts(self) -> Counts:
        stored = 0
        for stream in self.streams:
            stored += (await self.js.stream_info(stream)).state.messages
        delivered = sum(c.delivered.consumer_seq for c in await self._consumers())
        return Counts(
            writes=counter_total("stratum_db_transactions_total", kind="write"),
            reads=counter_total("stratum_db_transactions_total", kind="read"),
            published=counter_total("stratum_events_published_total"),
            stored=stored,
            delivered=delivered,
        )


def counts_per_pipeline(before: Counts, after: Counts, pipelines: int) -> dict[str, float]:
    writes = (after.writes - before.writes) / pipelines
    reads = (after.reads - before.reads) / pipelines
    return {
        "transactions": writes + reads,
        "writes": writes,
        "reads": reads,
        "published": (after.published - before.published) / pipelines,
        "stored": (after.stored - before.stored) / pipelines,
        "delivered": (after.delivered - before.delivered) / pipelines,
    }


async def measure(
    pipeline: Pipeline, bus: Bus, nats_pid: int, total: int, concurrent: int
) -> dict[str, Any]:
    """Counts and CPU per pipeline over `total` pipelines, `concurrent` at a time."""
    await bus.settle()
    counts, cpu = await bus.counts(), sample_cpu(nats_pid)
    if concurrent == 1:
        await latencies(pipeline, total)
    else:
        await busy_seconds(pipeline, total, concurrent)
    await bus.settle()
    cpu_after, counts_after = sample_cpu(nats_pid), await bus.counts()
    return {
        "pipelines": total,
        "concurrent": concurrent,
        **counts_per_pipeline(counts, counts_after, total),
        "cpu_ms": cpu_per_pipeline(cpu, cpu_after, total),
    }


def report(one: dict[str, Any], many: dict[str, Any]) -> str:
    """The lines the bench prints after its figures: per pipeline, at 1 and at N."""
    n = many["concurrent"]

    def transactions(c: dict[str, Any]) -> str:
        return f"{c['transactions']:.1f} (writes {c['writes']:.1f}, reads {c['reads']:.1f})"

    def events(c: dict[str, Any]) -> str:
        return (
            f"{c['published']:.1f} published, {c['stored']:.1f} stored,"
            f" {c['delivered']:.1f} delivered"
        )

    def cpu(c: dict[str, Any]) -> str:
        ms = c["cpu_ms"]
        return (
            f"python {ms['python']:.1f} ms, surrealdb {ms['surrealdb']:.1f} ms,"
            f" nats-server {ms['nats-server']:.1f} ms, nu {ms['nu']:.1f} ms"
            f"  (Stratum {ms['stratum']:.1f} ms)"
        )

    return "\n".join(
        [
            f"transactions per pipeline  {transactions(one)}; at {n}: {transactions(many)}",
            f"events per pipeline        {events(one)}; at {n}: {events(many)}",
            f"CPU per pipeline at 1      {cpu(one)}",
            f"CPU per pipeline at {n:<2}     {cpu(many)}",
        ]
    )
