"""A real Prometheus (Debian's 2.42, unpacked by `make install`) scrapes a running Stratum,
and PromQL over its HTTP API sees exactly the runs, node executions and compensation
steps the runs' views report.

The metrics registry is process-global and cumulative over the whole session, so the
runs here belong to a tenant of their own and every count is filtered by it.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import pytest_asyncio

from stratum.bus.local_server import free_port
from tests.conftest import eventually, stop_process
from tests.e2e.conftest import Harness

PROMETHEUS = Path(sys.executable).parent / "prometheus"
SAMPLE = "nickel/examples/sample-crate"
FUNCTIONS = {"ingest", "planner", "stage-executor", "compensator", "projector"}


class Prometheus:
    """A Prometheus server on loopback and its query API."""

    def __init__(self, url: str, client: httpx.AsyncClient) -> None:
        self.url = url
        self.client = client

    async def query(self, promql: str) -> list[dict[str, Any]]:
        """The instant vector `promql` evaluates to now."""
        response = await self.client.get(f"{self.url}/api/v1/query", params={"query": promql})
        response.raise_for_status()
        body = response.json()
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    async def by(self, promql: str, label: str) -> dict[str, float]:
        """`promql`'s samples keyed by one label."""
        return {s["metric"].get(label, ""): float(s["value"][1]) for s in await self.query(promql)}


@pytest_asyncio.fixture(loop_scope="session")
async def prometheus(tmp_path: Path, stratum: Harness) -> AsyncIterator[Prometheus]:
    """Prometheus scraping the test's Stratum (whose fixture serves the HTTP API) every
    second."""
    if not PROMETHEUS.exists():
        pytest.skip(f"no prometheus binary at {PROMETHEUS}: run `make install`")
    target = urlsplit(stratum.server.http_url).netloc
    home = tmp_path / "prometheus"
    home.mkdir()
    config = home / "prometheus.yml"
    config.write_text(
        "global:\n"
        "  scrape_interval: 1s\n"
        "scrape_configs:\n"
        "  - job_name: stratum\n"
        "    metrics_path: /metrics\n"
        "    static_configs:\n"
        f"      - targets: ['{target}']\n"
    )
    url = f"http://127.0.0.1:{free_port('127.0.0.1')}"
    log = (home / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            str(PROMETHEUS),
            f"--config.file={config}",
            f"--web.listen-address={urlsplit(url).netloc}",
            f"--storage.tsdb.path={home / 'data'}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        async with httpx.AsyncClient(timeout=5.0) as client:

            async def ready() -> bool:
                assert process.poll() is None, (home / "prometheus.log").read_text()
                try:
                    return (await client.get(f"{url}/-/ready")).status_code == 200
                except httpx.TransportError:
                    return False

            await eventually(ready, timeout=30.0, interval=0.1)
            yield Prometheus(url, client)
    finally:
        stop_process(process)
        log.close()


async def test_prometheus_scrapes_run_node_and_compensation_counts(
    stratum: Harness, prometheus: Prometheus, tmp_path: Path
) -> None:
    tenant = f"prom{uuid.uuid4().hex[:8]}"
    runs = [
        await stratum.emit("crate.push", {"source": SAMPLE}, tenant=tenant),
        await stratum.emit("crate.push", {"source": SAMPLE}, tenant=tenant),
        await stratum.emit(
            "release.request",
            {"version": "9.9.9", "target": str(tmp_path / "t"), "fail_at": "publish"},
            tenant=tenant,
        ),
    ]
    views = await asyncio.gather(*(stratum.finished(run) for run in runs))
    assert [view["status"] for view in views] == ["Succeeded", "Succeeded", "Compensated"]

    # what the views report. A run is counted once per status it enters
    # (functions/projector/app.py `count_transition`): the compensated run went through
    # Failed (RunFailed) and Compensating before Compensated.
    expected = {
        "runs": {
            "accepted": 3.0,
            "planned": 3.0,
            "running": 3.0,
            "succeeded": 2.0,
            "failed": 1.0,
            "compensating": 1.0,
            "compensated": 1.0,
        },
        # one stage-executor observation per node execution (nodes never started are
        # "pending" in the view)
        "nodes": float(
            sum(node["status"] != "pending" for v in views for node in v["nodes"].values())
        ),
        "compensations": dict(Counter(step["status"] for step in views[2]["compensation"])),
        # nothing is left waiting once every run has finished
        "queues": dict.fromkeys(FUNCTIONS, 0.0),
    }
    assert expected["compensations"] == {"succeeded": 3}, views[2]["compensation"]

    tenant_is = f'tenant="{tenant}"'

    async def scraped() -> dict[str, Any]:
        nodes = await prometheus.by(f"sum(stratum_node_duration_seconds_count{{{tenant_is}}})", "")
        depths = await prometheus.by('stratum_queue_depth{job="stratum"}', "function")
        return {
            "runs": await prometheus.by(
                f"sum by (status) (stratum_runs_total{{{tenant_is}}})", "status"
            ),
            "nodes": nodes.get(""),
            "compensations": await prometheus.by(
                f"sum by (status) (stratum_compensations_total{{{tenant_is}}})", "status"
            ),
            "queues": {function: depths.get(function) for function in FUNCTIONS},
        }

    async def as_expected() -> bool:
        return await scraped() == expected

    try:
        await eventually(as_expected, timeout=30.0, interval=0.5)
    except AssertionError:
        raise AssertionError(
            f"Prometheus shows {await scraped()}; the views report {expected}"
        ) from None
    # one status selected in the query itself, as an alert on undo steps would
    steps = await prometheus.by(
        f'sum(stratum_compensations_total{{{tenant_is},status="succeeded"}})', ""
    )
    assert steps == {"": 3.0}
