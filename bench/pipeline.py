"""Stratum vs a bare asyncio spawner on the same staged pipeline of trivial nu nodes.

    python -m bench.pipeline [--runs 40] [--concurrent 20] [--batch 100] [--no-tracing]

Shape: 2 parallel nodes -> 1 -> 1 (4 nu spawns per pipeline). Both sides run the same
scripts with the same nu binary, PATH and stdin, alternately (pipeline by pipeline for
latency, in rounds for throughput) so that both see the same machine. Stratum runs
in-process with its own nats-server (JetStream file store) and embedded SurrealDB on disk
with fsync per commit (durable writes on). Prints latency p50/p95, orchestration overhead
per node, and pipelines/s at 1 and N concurrent pipelines, with ratios to the baseline.

Then Stratum alone, `--runs` pipelines one at a time and `--batch` at N concurrent, for what
a pipeline costs (bench/cost.py): database transactions (writes, reads), events
(published by the functions, stored and delivered by nats-server) and CPU ms by process
(Stratum's Python, the embedded SurrealDB engine's threads, nats-server, the nu scripts),
what SurrealDB's CBOR costs per pipeline with the SDK's codec and with Stratum's
(bench/codec_cost.py), and where a pipeline's latency goes, hop by hop along its critical
path (bench/critical_path.py).

Then (unless --no-tracing; ~1-2 more minutes on 2 cores) the same Stratum pipeline with
tracing off against tracing on, exporting OTLP/HTTP protobuf to a local sink (see
bench/tracing_cost.py): latency p50/p95, pipelines/s at N, spans exported per run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

from bench import codec_cost, cost, critical_path, tracing_cost
from bench.measure import Pipeline, busy_seconds, latencies, pct

ROOT = Path(__file__).resolve().parent.parent
NODES = 4
SCRIPT = (
    "def main [] { let i = ($in | from json); "
    "{%s: {n: (($i.inputs | columns | length) + 1)}} | to json -r }\n"
)
WORKFLOW = """
let { schema, .. } = import "stratum.ncl" in
let cap = schema.object { n = schema.integer } in
{
  nodes = [
    { id = "a", trigger = "bench.run", produces = ["x"], handler = "a.nu" },
    { id = "b", trigger = "bench.run", produces = ["y"], handler = "b.nu" },
    { id = "c", consumes = ["x", "y"], produces = ["z"], handler = "c.nu" },
    { id = "d", trigger = "bench.run", consumes = ["z"], produces = ["w"], handler = "d.nu" },
  ],
  capabilities = { x = cap, y = cap, z = cap, w = cap },
}
"""
STAGES = [["a", "b"], ["c"], ["d"]]
PRODUCES = {"a": "x", "b": "y", "c": "z", "d": "w"}
CONSUMES = {"a": [], "b": [], "c": ["x", "y"], "d": ["z"]}


POLICY = """@id("bench-trigger-own-tenant")
permit (principal, action == Stratum::Action::"trigger", resource)
when { principal.tenant == resource.tenant };
"""


def write_definitions(folder: Path) -> None:
    folder.mkdir(parents=True)
    (folder / "bench.ncl").write_text(WORKFLOW)
    for node, capability in PRODUCES.items():
        (folder / f"{node}.nu").write_text(SCRIPT % capability)


def write_policies(folder: Path) -> None:
    """The shipped schema, and a policy that lets the bench trigger its own pipeline."""
    folder.mkdir(parents=True)
    schema = ROOT / "deploy" / "policies" / "stratum.cedarschema"
    (folder / schema.name).write_text(schema.read_text())
    (folder / "bench.cedar").write_text(POLICY)


def bench_settings(tmp: Path, prefix: str, **more: Any) -> Any:
    """A bench's Stratum: its definitions and policies under `tmp` (`defs`, `policies`),
    durable writes, no file watching, plain (unsigned) events."""
    from stratum.config import load_settings

    return load_settings(
        None,
        root=ROOT,
        environ={},
        overrides={
            "data_dir": str(tmp / "data"),
            "definitions": str(tmp / "defs"),
            "lib_dir": str(ROOT / "nickel" / "lib"),
            "watch": False,
            "durable_writes": True,
            "subject_prefix": prefix,
            "policies": str(tmp / "policies"),
            # the functions run as their own NKey users (as under `stratum up`); the
            # bench publishes plain events, so it measures orchestration, not signing
            "require_signatures": False,
            "dev_publishers": [],
            **more,
        },
    )


class Baseline:
    """What any asyncio program would do: spawn each stage's scripts together, pipe JSON."""

    def __init__(self, folder: Path, nu: Path, path: str) -> None:
        self.folder, self.nu, self.env = folder, nu, {"PATH": path, "LANG": "C.UTF-8"}

    async def node(self, node: str, caps: dict[str, Any]) -> dict[str, Any]:
        payload = {
            "run": {"id": "b", "tenant": "bench", "topic": "bench.run"},
            "event": {},
            "inputs": {c: caps[c] for c in CONSUMES[node]},
        }
        proc = await asyncio.create_subprocess_exec(
            str(self.nu),
            "--no-config-file",
            "--stdin",
            str(self.folder / f"{node}.nu"),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self.env,
            start_new_session=True,
        )
        out, _ = await proc.communicate(orjson.dumps(payload))
        if proc.returncode != 0:
            raise RuntimeError(f"baseline node {node} failed")
        result: dict[str, Any] = orjson.loads(out)
        return result

    async def pipeline(self) -> None:
        caps: dict[str, Any] = {}
        for stage in STAGES:
            for produced in await asyncio.gather(*(self.node(n, caps) for n in stage)):
                caps.update(produced)


class StratumSide:
    """Stratum in-process; a pipeline = publish a CloudEvent, await its RunSucceeded."""

    def __init__(self, server: Any, nc: Any) -> None:
        self.server, self.nc = server, nc
        self.waiting: dict[str, asyncio.Future[str]] = {}

    async def listen(self) -> None:
        async def done(msg: Any) -> None:
            future = self.waiting.pop((msg.headers or {}).get("Stratum-Run-Id", ""), None)
            if future is not None and not future.done():
                future.set_result(msg.subject)

        subjects = self.server.subjects
        for kind in ("run.succeeded", "run.compensated", "run.rejected"):
            await self.nc.subscribe(f"{subjects.prefix}.{kind}", cb=done)

    async def pipeline(self) -> None:
        await self.traced()

    async def traced(self) -> tuple[str, float]:
        """One pipeline; its run id and when its trigger was published."""
        from stratum.ids import run_id

        ident = str(uuid.uuid4())
        run = run_id("bench", ident)
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.waiting[run] = future
        body = {
            "specversion": "1.0",
            "id": ident,
            "source": "bench",
            "type": "bench.run",
            "datacontenttype": "application/json",
            "data": {},
        }
        published = time.perf_counter()
        await self.nc.jetstream().publish(
            self.server.subjects.event("bench", "bench.run"), orjson.dumps(body)
        )
        subject = await asyncio.wait_for(future, 60)
        if not subject.endswith("run.succeeded"):
            raise RuntimeError(f"bench run ended with {subject}")
        return run, published


async def interleaved_latencies(
    a: Pipeline, b: Pipeline, runs: int
) -> tuple[list[float], list[float]]:
    """Alternate the two sides run by run, so both see the same (shared, noisy) machine."""
    first: list[float] = []
    second: list[float] = []
    for _ in range(runs):
        first += await latencies(a, 1)
        second += await latencies(b, 1)
    return first, second


async def interleaved_throughput(
    a: Pipeline, b: Pipeline, total: int, concurrent: int, rounds: int = 4
) -> tuple[float, float]:
    """Pipelines/s of each side, measured in alternating rounds of total/rounds each."""
    per_round = max(total // rounds, concurrent)
    seconds_a = seconds_b = 0.0
    for _ in range(rounds):
        seconds_a += await busy_seconds(a, per_round, concurrent)
        seconds_b += await busy_seconds(b, per_round, concurrent)
    return per_round * rounds / seconds_a, per_round * rounds / seconds_b


async def main(runs: int, concurrent: int, batch: int, traced: bool = True) -> dict[str, Any]:
    import nats

    from stratum.bus.nkeys import CORE_IDENTITY
    from stratum.executor import curated_path
    from stratum_host.server import StratumServer

    with tempfile.TemporaryDirectory(prefix="stratum-bench-") as tmp:
        folder = Path(tmp) / "defs"
        write_definitions(folder)
        write_policies(Path(tmp) / "policies")
        settings = bench_settings(Path(tmp), "bench")
        server = StratumServer(settings)
        await server.start(http=False)
        core_seed = server.transport.seeds[CORE_IDENTITY]
        nc = await nats.connect(server.nats_url, nkeys_seed_str=core_seed)
        try:
            nu = settings.resolve_nu()
            path = curated_path(
                settings.data_dir / "toolbin", settings.nu_tools, os.environ["PATH"]
            )
            baseline = Baseline(folder, nu, path)
            stratum = StratumSide(server, nc)
            await stratum.listen()
            for side in (baseline.pipeline, stratum.pipeline):  # warm up caches and consumers
                await latencies(side, 3)
            base_ms, strat_ms = await interleaved_latencies(
                baseline.pipeline, stratum.pipeline, runs
            )
            base_1, strat_1 = await interleaved_throughput(
                baseline.pipeline, stratum.pipeline, max(runs // 2, 10), 1
            )
            base_n, strat_n = await interleaved_throughput(
                baseline.pipeline, stratum.pipeline, batch, concurrent
            )
            bus = cost.Bus(
                nc.jetstream(), [server.subjects.events_stream, server.subjects.runs_stream]
            )
            nats_pid = cost.child_named("nats-server")
            with codec_cost.recording() as corpus:
                cost_1 = await cost.measure(stratum.pipeline, bus, nats_pid, runs, 1)
            cbor = codec_cost.compare(corpus, runs)
            hops = await critical_path.measure(nc, server.subjects.prefix, stratum.traced, runs)
            cost_n = await cost.measure(stratum.pipeline, bus, nats_pid, batch, concurrent)
            tracing = (
                await tracing_cost.compare(stratum.pipeline, runs, batch, concurrent)
                if traced
                else None
            )
        finally:
            await nc.close()
            await server.stop()
    p50b, p95b, p50s, p95s = (
        pct(base_ms, 0.5),
        pct(base_ms, 0.95),
        pct(strat_ms, 0.5),
        pct(strat_ms, 0.95),
    )
    return {
        "machine": f"{os.cpu_count()} cores, {os.uname().sysname} {os.uname().machine}",
        "runs": runs,
        "concurrent": concurrent,
        "batch": batch,
        "nodes_per_pipeline": NODES,
        "baseline_ms": {"p50": p50b, "p95": p95b},
        "stratum_ms": {"p50": p50s, "p95": p95s},
        "overhead_per_node_ms": {"p50": (p50s - p50b) / NODES, "p95": (p95s - p95b) / NODES},
        "latency_ratio_p50": p50s / p50b,
        "pipelines_per_s": {
            "baseline_1": base_1,
            "stratum_1": strat_1,
            f"baseline_{concurrent}": base_n,
            f"stratum_{concurrent}": strat_n,
        },
        "throughput_ratio_1": strat_1 / base_1,
        f"throughput_ratio_{concurrent}": strat_n / base_n,
        "median_baseline_ms": statistics.median(base_ms),
        "cost": {"at_1": cost_1, f"at_{concurrent}": cost_n},
        "cbor": cbor,
        "critical_path_ms": hops,
        "tracing": tracing,
    }


def report(result: dict[str, Any]) -> str:
    c = result["concurrent"]
    pps = result["pipelines_per_s"]
    base, strat, over = result["baseline_ms"], result["stratum_ms"], result["overhead_per_node_ms"]
    lines = [
        f"Stratum bench: 2 -> 1 -> 1 trivial nu nodes; {result['machine']}",
        f"latency per pipeline  baseline p50 {base['p50']:.1f} ms  p95 {base['p95']:.1f} ms",
        f"                      stratum  p50 {strat['p50']:.1f} ms  p95 {strat['p95']:.1f} ms"
        f"  (x{result['latency_ratio_p50']:.2f} at p50)",
        f"overhead per node     p50 {over['p50']:.1f} ms  p95 {over['p95']:.1f} ms",
        f"pipelines/s at 1      baseline {pps['baseline_1']:.1f}"
        f"  stratum {pps['stratum_1']:.1f}"
        f"  ({result['throughput_ratio_1'] * 100:.0f}%)",
        f"pipelines/s at {c:<2}     baseline {pps[f'baseline_{c}']:.1f}"
        f"  stratum {pps[f'stratum_{c}']:.1f}  ({result[f'throughput_ratio_{c}'] * 100:.0f}%)",
    ]
    if result["tracing"] is not None:
        lines.append(tracing_cost.report(result["tracing"]))
    lines.append(cost.report(result["cost"]["at_1"], result["cost"][f"at_{c}"]))
    lines.append(codec_cost.report(result["cbor"]))
    lines.append(critical_path.report(result["critical_path_ms"]))
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--concurrent", type=int, default=20)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument(
        "--tracing",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also measure tracing off vs on (OTLP/HTTP to a local sink)",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.tracing:
        tracing_cost.check_environment()
    outcome = asyncio.run(main(args.runs, args.concurrent, args.batch, args.tracing))
    print(
        orjson.dumps(outcome, option=orjson.OPT_INDENT_2).decode() if args.json else report(outcome)
    )
