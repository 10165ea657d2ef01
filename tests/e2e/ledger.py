"""A three-stage workflow (a, b -> c -> d) whose scripts keep a ledger of what they did.

Every execution of a node is appended to `executions.log`; its effect is performed once
per (run, node) — as docs/guarantees.md asks of script authors — and each time it is
performed a line goes to `effects.log`. Fault tests compare the ledger with what Stratum
recorded: an effect logged twice is a duplicated effect, an execution after the recorded
successful attempt is a node run again after its success.
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from stratum.ids import run_id

NODES = ("a", "b", "c", "d")
TOPIC = "ledger.run"
PRODUCES = {"a": "x", "b": "y", "c": "z", "d": "w"}

WORKFLOW = """
let { schema, .. } = import "stratum.ncl" in
let cap = schema.object { n = schema.integer } in
{
  nodes = [
    { id = "a", trigger = "ledger.run", produces = ["x"], handler = "a.nu", timeout = 20,
      compensate = "undo.nu" },
    { id = "b", trigger = "ledger.run", produces = ["y"], handler = "b.nu", timeout = 20,
      compensate = "undo.nu" },
    { id = "c", consumes = ["x", "y"], produces = ["z"], handler = "c.nu", timeout = 20,
      compensate = "undo.nu" },
    { id = "d", trigger = "ledger.run", consumes = ["z"], produces = ["w"], handler = "d.nu",
      timeout = 20 },
  ],
  capabilities = { x = cap, y = cap, z = cap, w = cap },
}
"""
SCRIPT = """def main [] {
  let i = ($in | from json)
  let ledger = $i.event.ledger
  let who = $"($env.STRATUM_RUN_ID) ($env.STRATUM_NODE) ($env.STRATUM_ATTEMPT)"
  $"($who)\\n" | save --append ($ledger | path join "executions.log")
  sleep 60ms
  if ($i.event.fail_at? | default "") == $env.STRATUM_NODE {
    print -e "asked to fail"
    exit 3
  }
  let effect = ($ledger | path join "effects" $"($env.STRATUM_RUN_ID).($env.STRATUM_NODE)")
  if not ($effect | path exists) {
    $env.STRATUM_IDEMPOTENCY_KEY | save $effect
    $"($who)\\n" | save --append ($ledger | path join "effects.log")
  }
  {%s: {n: 1}} | to json -r
}
"""

# undoes the effect once: a compensation run again after a crash finds nothing to undo
UNDO = """def main [] {
  let i = ($in | from json)
  let ledger = $i.event.ledger
  let effect = ($ledger | path join "effects" $"($env.STRATUM_RUN_ID).($env.STRATUM_NODE)")
  sleep 30ms
  if ($effect | path exists) {
    rm $effect
    let undone = ($ledger | path join "undone.log")
    $"($env.STRATUM_RUN_ID) ($env.STRATUM_NODE)\\n" | save --append $undone
  }
}
"""


def write_workflow(definitions: Path) -> None:
    definitions.mkdir(parents=True, exist_ok=True)
    (definitions / "ledger.ncl").write_text(WORKFLOW)
    (definitions / "undo.nu").write_text(UNDO)
    for node, capability in PRODUCES.items():
        (definitions / f"{node}.nu").write_text(SCRIPT % capability)


@dataclass
class Ledger:
    """The ledger folder the scripts write to, and what can be read from it."""

    folder: Path

    def create(self) -> Ledger:
        (self.folder / "effects").mkdir(parents=True, exist_ok=True)
        for name in ("executions.log", "effects.log", "undone.log"):
            (self.folder / name).touch()
        return self

    def event_data(self, fail_at: str = "") -> dict[str, Any]:
        return {"ledger": str(self.folder), "fail_at": fail_at}

    def cloudevent(self, ident: str, *, fail_at: str = "", source: str = "tests") -> bytes:
        """A publisher's CloudEvent starting one ledger pipeline."""
        body = {
            "specversion": "1.0",
            "id": ident,
            "source": source,
            "type": TOPIC,
            "data": self.event_data(fail_at),
        }
        return orjson.dumps(body)

    async def emit(
        self, jetstream: Any, subject: str, count: int, *, source: str = "tests"
    ) -> tuple[list[str], frozenset[str]]:
        """Publish `count` pipelines of tenant acme, every fourth asked to fail at d; their
        run ids, and those of the failing ones."""
        runs, failing = [], set()
        for index in range(count):
            ident = str(uuid.uuid4())
            fail = index % 4 == 3
            await jetstream.publish(
                subject, self.cloudevent(ident, fail_at="d" if fail else "", source=source)
            )
            runs.append(run_id("acme", ident))
            if fail:
                failing.add(runs[-1])
        return runs, frozenset(failing)

    def executions(self) -> list[tuple[str, str, int]]:
        rows = (self.folder / "executions.log").read_text().splitlines()
        return [(run, node, int(attempt)) for run, node, attempt in (r.split() for r in rows)]

    def effects(self) -> Counter[tuple[str, str]]:
        rows = (self.folder / "effects.log").read_text().splitlines()
        return Counter((row.split()[0], row.split()[1]) for row in rows)

    def undone(self) -> Counter[tuple[str, str]]:
        rows = (self.folder / "undone.log").read_text().splitlines()
        return Counter((row.split()[0], row.split()[1]) for row in rows)

    def audit(
        self,
        views: dict[str, dict[str, Any]],
        runs: list[str],
        failing: frozenset[str] = frozenset(),
    ) -> dict[str, Any]:
        """Compare the ledger with the runs' views (from `/api/runs/{id}` or the store).
        Runs in `failing` were asked to fail at node d: they must end Compensated with
        the effects of a, b and c each done once and undone once (all three have a
        compensate script, so there is something to undo; a run failing with nothing to
        undo would end Failed)."""
        expected = {r: "Compensated" if r in failing else "Succeeded" for r in runs}
        completed = [r for r in runs if views.get(r, {}).get("status") == expected[r]]
        effects, undone = self.effects(), self.undone()
        executions = self.executions()
        succeeded_attempt = {
            (r, n): int(Path(views[r]["nodes"][n]["bundle"]).name)
            for r in completed
            for n in NODES
            if views[r]["nodes"][n]["status"] == "succeeded"
        }
        per_node = Counter((r, n) for r, n, _ in executions)
        done = {r: ("a", "b", "c") if r in failing else NODES for r in completed}
        return {
            "completed": completed,
            "wrong_status": {
                r: views[r]["status"]
                for r in runs
                if views.get(r, {}).get("finished") and r not in completed
            },
            "lost": [r for r in runs if not views.get(r, {}).get("finished")],
            "duplicated": [key for key, count in effects.items() if count > 1]
            + [(*key, "undo") for key, count in undone.items() if count > 1],
            "missing": [(r, n) for r in completed for n in done[r] if (r, n) not in effects],
            "not_undone": [
                (r, n) for r in completed if r in failing for n in done[r] if (r, n) not in undone
            ],
            "rerun_after_success": [
                (r, n, a)
                for r, n, a in executions
                if (r, n) in succeeded_attempt and a > succeeded_attempt[(r, n)]
            ],
            "reexecuted": sum(1 for count in per_node.values() if count > 1),
        }
