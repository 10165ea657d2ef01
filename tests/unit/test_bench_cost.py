"""The bench's cost accounting (bench/cost.py): /proc lines read right, CPU split by process
and divided by pipelines, the nats-server child found by name."""

from __future__ import annotations

import subprocess

from bench.cost import (
    TICK_NS,
    Counts,
    Cpu,
    child_named,
    counts_per_pipeline,
    cpu_per_pipeline,
    stat_cpu_ns,
    stat_ppid_and_name,
)
from tests.conftest import stop_process

# a name with a space and parentheses, as a thread or process may have
STAT = "4242 (we (i) rd) S 17 4242 4242 0 -1 4194560 1 0 0 0 30 12 5 6 20 0 9 0 1 1 1"


def test_a_stat_line_is_read_after_the_name() -> None:
    assert stat_ppid_and_name(STAT) == (17, "we (i) rd")
    assert stat_cpu_ns(STAT) == (30 + 12) * TICK_NS  # utime + stime, not the children's


def test_cpu_is_split_by_process_and_divided_by_pipelines() -> None:
    ms = 1_000_000
    before = Cpu(
        process=100 * ms,
        native={7: ("tokio-runtime-w", 10 * ms), 8: ("surrealkv-commi", 1 * ms)},
        nats=5 * ms,
        children=50 * ms,
    )
    after = Cpu(
        process=300 * ms,
        # 7 and 8 ran on, 9 started meanwhile
        native={
            7: ("tokio-runtime-w", 50 * ms),
            8: ("surrealkv-commi", 11 * ms),
            9: ("tokio-runtime-w", 10 * ms),
        },
        nats=25 * ms,
        children=250 * ms,
    )
    cpu = cpu_per_pipeline(before, after, 2)
    assert cpu == {
        "python": (200 - 60) / 2,
        "surrealdb": 60 / 2,
        "nats-server": 20 / 2,
        "nu": 200 / 2,
        "stratum": (200 + 20) / 2,
        "surrealdb_threads": {"surrealkv-commi": 10 / 2, "tokio-runtime-w": 50 / 2},
    }


def test_counts_are_divided_by_pipelines() -> None:
    before = Counts(writes=10, reads=4, published=3, stored=4, delivered=6)
    after = Counts(writes=36, reads=12, published=37, stored=40, delivered=78)
    assert counts_per_pipeline(before, after, 2) == {
        "transactions": 17.0,
        "writes": 13.0,
        "reads": 4.0,
        "published": 17.0,
        "stored": 18.0,
        "delivered": 36.0,
    }


def test_the_child_is_found_by_name() -> None:
    child = subprocess.Popen(["sleep", "60"])
    try:
        assert child_named("sleep") == child.pid
    finally:
        stop_process(child)
