"""How fast a cancel stops a run: `POST /api/runs/{id}/cancel` while a node runs.

    python -m bench.cancel [--runs 20]

Stratum runs in-process (its own nats-server, embedded SurrealDB on disk with fsync per
commit, the HTTP API on loopback). Each run: stage 0 `first` (trivial nu, with a
compensate script), then stage 1 `slow` (a shell that sleeps a minute). Once `slow`'s
shell is up, the bench asks for the cancel and times, from the request: the API's answer
(Cedar's decision, the command published), the slow node's whole process group gone (the
planner's write, `stratum.run.cancelling` heard by the stage executor, SIGTERM), and
`stratum.run.cancelled` on the bus (the stage stopped, `first` undone by its nu script,
the saga's end stored). Prints p50/p95 of each.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench.measure import pct
from bench.pipeline import bench_settings, write_policies

WORKFLOW = """
let { schema, .. } = import "stratum.ncl" in
let done = schema.object { node = schema.string } in
{
  nodes = [
    { id = "first", trigger = "bench.cancel", produces = ["first-done"], handler = "first.nu",
      compensate = "undo.nu" },
    { id = "slow", trigger = "bench.cancel", consumes = ["first-done"], produces = ["slow-done"],
      handler = "slow.nu", timeout = 120 },
  ],
  capabilities = { "first-done" = done, "slow-done" = done },
}
"""
FIRST = 'def main [] { {"first-done": {node: "first"}} | to json -r }\n'
SLOW = """def main [] {
    let pidfile = ($env.STRATUM_WORKSPACE | path join "slow.pid")
    ^sh -c $"echo $$ > ($pidfile); exec sleep 60"
    {"slow-done": {node: "slow"}} | to json -r
}
"""
UNDO = 'def main [] { {undone: "first"} | to json -r }\n'
CANCEL_POLICY = """@id("bench-cancel-own-tenant")
permit (principal is Stratum::Source, action == Stratum::Action::"cancel", resource)
when { principal.tenant == resource.tenant };
"""


def write_definitions(folder: Path) -> None:
    folder.mkdir(parents=True)
    for name, text in {
        "cancel.ncl": WORKFLOW,
        "first.nu": FIRST,
        "slow.nu": SLOW,
        "undo.nu": UNDO,
    }.items():
        (folder / name).write_text(text)


def gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")


async def until(check: Any, seconds: float, what: str) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        await asyncio.sleep(0.001)
    raise RuntimeError(f"{what} within {seconds} s")


async def one_cancel(
    nc: Any, http: httpx.AsyncClient, server: Any, ended: dict[str, asyncio.Future[float]]
) -> tuple[float, float, float]:
    """One run cancelled while `slow` sleeps: ms to the API's answer, to the process group
    gone, to `run.cancelled`."""
    from stratum.ids import run_id

    ident = str(uuid.uuid4())
    run = run_id("bench", ident)
    ended[run] = asyncio.get_running_loop().create_future()
    body = {"specversion": "1.0", "id": ident, "source": "bench", "type": "bench.cancel"}
    await nc.jetstream().publish(server.subjects.event("bench", "bench.cancel"), orjson.dumps(body))
    pidfile = server.settings.data_dir / "runs" / run / "workspace" / "slow.pid"

    def slow_pid() -> int | None:
        text = pidfile.read_text().strip() if pidfile.is_file() else ""
        return int(text) if text else None

    pid: int = await until(slow_pid, 30, "slow's shell started")
    asked = time.perf_counter()
    answer = await http.post(
        f"/api/runs/{run}/cancel", json={"reason": "bench"}, headers={"Stratum-Caller": "bench"}
    )
    answered = time.perf_counter()
    if answer.status_code != 202:
        raise RuntimeError(f"cancel answered {answer.status_code}: {answer.text}")
    await until(lambda: gone(pid), 30, "slow's process group gone")
    killed = time.perf_counter()
    cancelled = await asyncio.wait_for(ended[run], 30)
    return (
        (answered - asked) * 1000,
        (killed - asked) * 1000,
        (cancelled - asked) * 1000,
    )


async def main(runs: int) -> dict[str, list[float]]:
    import nats

    from stratum.bus.nkeys import CORE_IDENTITY
    from stratum_host.server import StratumServer

    with tempfile.TemporaryDirectory(prefix="stratum-bench-cancel-") as tmp:
        folder = Path(tmp) / "defs"
        write_definitions(folder)
        policies = Path(tmp) / "policies"
        write_policies(policies)
        (policies / "cancel.cedar").write_text(CANCEL_POLICY)
        settings = bench_settings(
            Path(tmp),
            "benchcancel",
            http_host="127.0.0.1",
            http_port=0,
            nu_tools=["sh", "sleep"],  # what `slow` runs
        )
        server = StratumServer(settings)
        await server.start(http=True)
        nc = await nats.connect(
            server.nats_url, nkeys_seed_str=server.transport.seeds[CORE_IDENTITY]
        )
        ended: dict[str, asyncio.Future[float]] = {}

        async def cancelled(msg: Any) -> None:
            future = ended.get((msg.headers or {}).get("Stratum-Run-Id", ""))
            if future is not None and not future.done():
                future.set_result(time.perf_counter())

        await nc.subscribe(f"{server.subjects.prefix}.run.cancelled", cb=cancelled)
        samples: dict[str, list[float]] = {"answered": [], "killed": [], "cancelled": []}
        try:
            async with httpx.AsyncClient(base_url=server.http_url, timeout=30) as http:
                await one_cancel(nc, http, server, ended)  # warm up
                for _ in range(runs):
                    answered, killed, done = await one_cancel(nc, http, server, ended)
                    samples["answered"].append(answered)
                    samples["killed"].append(killed)
                    samples["cancelled"].append(done)
        finally:
            await nc.close()
            await server.stop()
        return samples


def report(samples: dict[str, list[float]]) -> str:
    labels = {
        "answered": "API answered (202)",
        "killed": "slow node's process group gone",
        "cancelled": "run.cancelled (stage stopped, first undone)",
    }
    lines = [f"Stratum cancel bench: {len(samples['killed'])} runs, each cancelled mid-node"]
    for key, label in labels.items():
        p50, p95 = pct(samples[key], 0.5), pct(samples[key], 0.95)
        lines.append(f"  {label:<45} p50 {p50:6.1f} ms  p95 {p95:6.1f} ms")
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    print(report(asyncio.run(main(parser.parse_args().runs))))
