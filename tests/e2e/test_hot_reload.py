"""Hot reload: `stratum up` watches the definitions folder. While a run is in flight, every
kind of invalid change keeps the previous graph live and reports the error with its place
(on the HTTP API, in the JSON log, and from `stratum check`); a valid change becomes a new
graph version that only runs started after it use. The in-flight run ends with the plan and
version it started with. While a broken change stands, Stratum stays live and ready but
says it is degraded — on /healthz, as a gauge on /metrics, in `stratum top` — until fixed.

The workflow (written per test): `hold` (stage 0) waits for a gate file in its run's
workspace, so the test decides when a run may go on; `after` (stage 1) consumes its output.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import pytest_asyncio

from stratum.clock import iso, utc_now
from stratum.config import Settings
from stratum.telemetry.logs import JsonFormatter
from tests.conftest import ROOT, eventually, listening, make_settings
from tests.e2e.conftest import Harness, running
from tests.e2e.test_cli_observe import cli, ok

WORKFLOW = """let { schema, .. } = import "stratum.ncl" in
{
  nodes = [
    { id = "hold", trigger = "hot.go", produces = ["held"], handler = "hold.nu", timeout = 30 },
    { id = "after", trigger = "hot.go", consumes = ["held"], handler = "after.nu" },
  ],
  capabilities = { held = schema.object { waited = schema.integer } },
}
"""

HOLD = """
def main [] {
    let gate = ($env.STRATUM_WORKSPACE | path join "gate")
    "" | save -f ($env.STRATUM_WORKSPACE | path join "holding")
    mut waited = 0
    while not ($gate | path exists) {
        if $waited > 500 {
            print -e "hold: the gate never opened"
            exit 1
        }
        sleep 40ms
        $waited = $waited + 1
    }
    {held: {waited: $waited}} | to json -r
}
"""

AFTER = """
def main [] { {} | to json -r }
"""

# A valid change: one more node in stage 1.
EXTRA = """let { schema, .. } = import "stratum.ncl" in
{
  nodes = [ { id = "extra", trigger = "hot.go", consumes = ["held"], handler = "after.nu" } ],
}
"""

CYCLE = """let { schema, .. } = import "stratum.ncl" in
{
  nodes = [
    { id = "ping", trigger = "loop.go", consumes = ["pong-out"], produces = ["ping-out"],
      handler = "after.nu" },
    { id = "pong", consumes = ["ping-out"], produces = ["pong-out"], handler = "after.nu" },
  ],
  capabilities = { "ping-out" = schema.any, "pong-out" = schema.any },
}
"""

ORPHAN = """{
  nodes = [
    { id = "orphan", trigger = "orphan.go", consumes = ["nothing"], handler = "after.nu" },
  ],
}
"""

# Capability names are global: two producers of `spare`, which nobody consumes (the
# planner refuses every hot.go run for them) ...
SPARE = """let { schema, .. } = import "stratum.ncl" in
{
  nodes = [
    { id = "spare-a", trigger = "hot.go", produces = ["spare"], handler = "after.nu" },
    { id = "spare-b", trigger = "hot.go", produces = ["spare"], handler = "after.nu" },
  ],
  capabilities = { spare = schema.any },
}
"""

# ... and a second producer of `held`, which `after` consumes, in another file than `hold`.
AGAIN = """{
  nodes = [ { id = "again", produces = ["held"], handler = "after.nu" } ],
}
"""


def at(file: Path, needle: str, nth: int = 0) -> str:
    """`file:line:column` of the `nth` (0-based) `needle` in `file`."""
    text = file.read_text()
    start = -1
    for _ in range(nth + 1):
        start = text.index(needle, start + 1)
    line = text.count("\n", 0, start) + 1
    column = start - (text.rfind("\n", 0, start) + 1) + 1
    return f"{file}:{line}:{column}"


def clash(capability: str, first: tuple[str, str], second: tuple[str, str]) -> list[str]:
    """The two located problems of `capability` produced by two nodes: `(node, place)`
    each, in id order; each problem names the other node's place."""
    (one, one_at), (two, two_at) = first, second
    problem = f"capability '{capability}' has 2 producers: "
    return [
        f"{one_at}: {problem}'{one}' here, '{two}' at {two_at}",
        f"{two_at}: {problem}'{one}' at {one_at}, '{two}' here",
    ]


def second_producers(folder: Path) -> list[tuple[str, str, list[str]]]:
    """(file, text, expected problems) of SPARE and AGAIN, as they are added to `folder`."""
    spare, again = folder / "spare.ncl", folder / "again.ncl"
    spare.write_text(SPARE)
    again.write_text(AGAIN)
    expected = [
        (
            spare.name,
            SPARE,
            clash(
                "spare",
                ("spare-a", at(spare, '"spare"]')),
                ("spare-b", at(spare, '"spare"]', 1)),
            ),
        ),
        (
            again.name,
            AGAIN,
            clash(
                "held",
                ("again", at(again, '"held"]')),
                ("hold", at(folder / "hot.ncl", '"held"]')),
            ),
        ),
    ]
    spare.unlink()
    again.unlink()
    return expected


@dataclass(frozen=True)
class Change:
    """One invalid change to the workflow folder, and the place its error must name."""

    name: str
    apply: Callable[[Path], Path]  # breaks the folder; returns the file the error is in
    needle: str  # where in that file the error points
    message: str

    def expected(self, file: Path) -> str:
        """`file:line:column: message`, the line and column those of `needle`."""
        return f"{at(file, self.needle)}: {self.message}"


def _edit(old: str, new: str) -> Callable[[Path], Path]:
    def apply(folder: Path) -> Path:
        file = folder / "hot.ncl"
        assert old in WORKFLOW
        file.write_text(WORKFLOW.replace(old, new))
        return file

    return apply


def _add(name: str, text: str) -> Callable[[Path], Path]:
    def apply(folder: Path) -> Path:
        (folder / name).write_text(text)
        return folder / name

    return apply


def _delete_script(folder: Path) -> Path:
    (folder / "after.nu").unlink()
    return folder / "hot.ncl"


CHANGES = [
    Change(
        "syntax",
        _edit("  ],\n  capabilities", "  ,\n  capabilities"),
        ",\n  cap",
        "unexpected token",
    ),
    Change(
        "contract",
        _edit("timeout = 30", "timeout = -1"),
        "-1",
        "contract broken by the value of `timeout`: must be a number greater than 0",
    ),
    Change("cycle", _add("loop.ncl", CYCLE), '"ping"', "cycle: ping -> pong -> ping"),
    Change(
        "missing producer",
        _add("orphan.ncl", ORPHAN),
        '"orphan"',
        "node 'orphan' consumes 'nothing', which no node produces",
    ),
    Change(
        "missing script",
        _edit('handler = "after.nu"', 'handler = "gone.nu"'),
        '"gone.nu"',
        "node 'after': `handler` script 'gone.nu' does not exist",
    ),
    Change(
        "deleted script",
        _delete_script,
        '"after.nu"',
        "node 'after': `handler` script 'after.nu' does not exist",
    ),
]


def write_workflow(folder: Path) -> Path:
    """The valid folder: `hot.ncl`, `hold.nu`, `after.nu` and nothing else."""
    folder.mkdir(parents=True, exist_ok=True)
    for extra in ("loop.ncl", "orphan.ncl", "extra.ncl", "spare.ncl", "again.ncl"):
        (folder / extra).unlink(missing_ok=True)
    for name, text in {"hot.ncl": WORKFLOW, "hold.nu": HOLD, "after.nu": AFTER}.items():
        if not (folder / name).is_file() or (folder / name).read_text() != text:
            (folder / name).write_text(text)
    return folder


class LogRecords(logging.Handler):
    """The `stratum.graph` log as the JSON lines `stratum up` writes."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonFormatter())
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(orjson.loads(self.format(record)))


@pytest.fixture()
def graph_log() -> Iterator[LogRecords]:
    with listening("stratum.graph", LogRecords()) as handler:
        yield handler


@pytest.fixture()
def settings(tmp_path: Path, nats_url: str) -> Settings:
    folder = write_workflow(tmp_path / "defs")
    return make_settings(tmp_path, nats_url, definitions=str(folder), watch=True)


@pytest_asyncio.fixture(loop_scope="session")
async def watched(settings: Settings) -> AsyncIterator[Harness]:
    async with running(settings) as harness:
        yield harness


async def get(harness: Harness, path: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=harness.server.http_url, timeout=5) as client:
        body: dict[str, Any] = (await client.get(path)).json()
    return body


async def health(harness: Harness) -> dict[str, Any]:
    return await get(harness, "/healthz")


def workspace(settings: Settings, run: str) -> Path:
    return settings.data_dir / "runs" / run / "workspace"


async def holding(settings: Settings, run: str) -> None:
    async def started() -> bool:
        return (workspace(settings, run) / "holding").is_file()

    await eventually(started, timeout=30)


def release(settings: Settings, run: str) -> None:
    workspace(settings, run).mkdir(parents=True, exist_ok=True)
    (workspace(settings, run) / "gate").write_text("")


async def test_invalid_changes_keep_the_graph_and_a_valid_one_only_reaches_new_runs(
    watched: Harness, settings: Settings, graph_log: LogRecords
) -> None:
    original = await health(watched)
    assert original["graph_error"] is None and original["graph_version"]
    version = original["graph_version"]
    held: list[str] = []
    try:
        held.append(await watched.emit("hot.go", {}))
        await holding(settings, held[0])
        for change in CHANGES:
            await broken_change_is_reported(watched, settings, graph_log, change, version)

        # a valid change while the first run is still in flight
        (settings.definitions / "extra.ncl").write_text(EXTRA)

        async def new_version() -> str | None:
            body = await health(watched)
            changed = body["graph_version"] != version and body["graph_error"] is None
            return str(body["graph_version"]) if changed else None

        newer = await eventually(new_version, timeout=15)
        assert any(
            line["msg"] == "graph loaded" and line.get("version") == newer
            for line in graph_log.lines
        )
        held.append(await watched.emit("hot.go", {}))
        await holding(settings, held[1])
    finally:
        for run in held:  # also on failure: a held run would stall the server's stop
            release(settings, run)

    old_run = await watched.finished(held[0], timeout=30)
    new_run = await watched.finished(held[1], timeout=30)
    assert old_run["status"] == "Succeeded", old_run.get("error")
    assert old_run["graph_version"] == version
    assert [s["nodes"] for s in old_run["stages"]] == [["hold"], ["after"]]
    assert new_run["status"] == "Succeeded", new_run.get("error")
    assert new_run["graph_version"] == newer
    assert [s["nodes"] for s in new_run["stages"]] == [["hold"], ["after", "extra"]]


async def broken_change_is_reported(
    harness: Harness, settings: Settings, graph_log: LogRecords, change: Change, version: str
) -> None:
    """Make `change`, see its located error on the API and in the log with `version` still
    live, then undo it and see the same version valid again."""
    expected = change.expected(change.apply(settings.definitions))

    async def reported() -> dict[str, Any] | None:
        body = await health(harness)
        return body if expected in (body["graph_error"] or "") else None

    body = await eventually(reported, timeout=15)
    assert body["graph_version"] == version, change.name
    assert body["graph_error"].startswith(expected), change.name  # the first problem
    graph = await get(harness, "/api/graph")
    assert (graph["version"], graph["error"]) == (version, body["graph_error"])
    assert set(graph["nodes"]) == {"hold", "after"}, "the previous graph stays live"
    logged = [line for line in graph_log.lines if expected in line.get("error", "")]
    assert logged and logged[-1]["level"] == "error", change.name
    assert logged[-1]["msg"] == "graph reload failed; keeping the previous graph"

    since = len(graph_log.lines)
    write_workflow(settings.definitions)

    async def recovered() -> dict[str, Any] | None:
        body = await health(harness)
        return body if body["graph_error"] is None else None

    assert (await eventually(recovered, timeout=15))["graph_version"] == version
    assert "graph valid again, unchanged" in [line["msg"] for line in graph_log.lines[since:]]


async def test_a_second_producer_is_refused_at_both_places_and_the_graph_keeps_serving(
    watched: Harness, settings: Settings
) -> None:
    """Before, a capability nobody consumes could have two producers: the reload was taken
    and every hot.go run failed at planning. Now that reload is refused, as is a second
    producer of a consumed capability, each problem naming the other producer's place."""
    version = (await health(watched))["graph_version"]
    for name, text, expected in second_producers(settings.definitions):
        (settings.definitions / name).write_text(text)

        async def refused(expected: list[str] = expected) -> str | None:
            error = (await health(watched))["graph_error"] or ""
            return error if all(problem in error for problem in expected) else None

        await eventually(refused, timeout=15)
        graph = await get(watched, "/api/graph")
        assert graph["version"] == version, name
        assert set(graph["nodes"]) == {"hold", "after"}, "the previous graph stays live"

        run = await watched.emit("hot.go", {})  # still planned, with the previous graph
        try:
            await holding(settings, run)
        finally:
            release(settings, run)
        done = await watched.finished(run, timeout=30)
        assert done["status"] == "Succeeded", done.get("error")
        assert done["graph_version"] == version
        assert [s["nodes"] for s in done["stages"]] == [["hold"], ["after"]]

        write_workflow(settings.definitions)

        async def recovered() -> bool:
            body = await health(watched)
            return body["graph_error"] is None and body["graph_version"] == version

        await eventually(recovered, timeout=15)


def check(folder: Path) -> subprocess.CompletedProcess[str]:
    """`stratum check` on `folder`, as a user runs it."""
    env = {**os.environ, "STRATUM_DEFINITIONS": str(folder), "STRATUM_WATCH": "false"}
    return subprocess.run(
        [str(Path(sys.executable).parent / "stratum"), "check"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("change", CHANGES, ids=[c.name for c in CHANGES])
def test_check_prints_the_located_error(change: Change, tmp_path: Path) -> None:
    folder = write_workflow(tmp_path / "defs")
    expected = change.expected(change.apply(folder))
    result = check(folder)
    assert result.returncode == 1
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


def test_check_refuses_a_second_producer_at_both_places(tmp_path: Path) -> None:
    folder = write_workflow(tmp_path / "defs")
    assert check(folder).returncode == 0
    for name, text, expected in second_producers(folder):
        (folder / name).write_text(text)
        result = check(folder)
        assert result.returncode == 1, name
        for problem in expected:
            assert problem in result.stderr, name
        assert result.stderr.strip().splitlines()[-1].startswith("error: 2 problem(s) in ")
        write_workflow(folder)


def gauge(text: str, name: str) -> float | None:
    """The value of the unlabelled sample `name` in Prometheus text."""
    found = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else None


async def observed(harness: Harness) -> dict[str, Any]:
    """What a monitor sees: /healthz and /readyz (status code and body), the
    definitions' gauges on /metrics, and `stratum top --once` (--json and text)."""
    async with httpx.AsyncClient(base_url=harness.server.http_url, timeout=5) as client:
        live, ready = await client.get("/healthz"), await client.get("/readyz")
        scraped = (await client.get("/metrics")).text
    return {
        "live": (live.status_code, live.json()),
        "ready": (ready.status_code, ready.json()),
        "degraded": gauge(scraped, "stratum_definitions_degraded"),
        "loaded": gauge(scraped, "stratum_definitions_loaded_timestamp_seconds"),
        "top": orjson.loads(ok(await cli(harness, "top", "--once", "--json"))),
        "screen": ok(await cli(harness, "top", "--once")),
    }


async def test_a_broken_definition_degrades_health_metrics_and_top_until_fixed(
    watched: Harness, settings: Settings
) -> None:
    before = await observed(watched)
    assert before["live"][0] == 200 and before["live"][1]["status"] == "ok"
    fine = before["live"][1]["definitions"]
    assert fine["degraded"] is False and fine["error"] is None and fine["since"] is None
    version = fine["version"]
    assert version and fine["loaded_at"]
    assert (before["degraded"], before["ready"][0]) == (0.0, 200)
    assert before["top"]["health"]["definitions"]["degraded"] is False
    assert "degraded" not in before["screen"]

    broken_at = iso(utc_now())
    syntax = CHANGES[0]
    expected = syntax.expected(syntax.apply(settings.definitions))

    async def degraded() -> dict[str, Any] | None:
        seen = await observed(watched)
        error = seen["live"][1]["definitions"]["error"] or ""
        return seen if expected in error else None

    seen = await eventually(degraded, timeout=20)
    status, body = seen["live"]
    # still live and still ready: the previous graph serves
    assert (status, seen["ready"][0]) == (200, 200)
    assert body["status"] == "degraded"
    definitions = body["definitions"]
    assert definitions["degraded"] is True and definitions["version"] == version
    assert definitions["error"].startswith(expected)  # file:line:col: message
    assert broken_at <= definitions["since"] and definitions["loaded_at"] == fine["loaded_at"]
    assert body["policies"]["degraded"] is False  # the policies are not what broke
    assert seen["degraded"] == 1.0 and seen["loaded"] == before["loaded"]
    topped = seen["top"]["health"]["definitions"]
    assert topped["degraded"] is True and topped["version"] == version
    assert expected in topped["error"] and topped["since"] == definitions["since"]
    assert seen["top"]["graph_version"] == version
    screen = " ".join(seen["screen"].split())  # a long error may wrap
    assert f"definitions degraded since {definitions['since']} ({version} still serving)" in screen
    assert " ".join(expected.split()) in screen

    write_workflow(settings.definitions)

    async def cleared() -> dict[str, Any] | None:
        seen = await observed(watched)
        return seen if seen["live"][1]["status"] == "ok" else None

    after = await eventually(cleared, timeout=20)
    definitions = after["live"][1]["definitions"]
    assert definitions["degraded"] is False and definitions["error"] is None
    assert definitions["since"] is None and definitions["version"] == version
    assert definitions["loaded_at"] > fine["loaded_at"]
    assert after["degraded"] == 0.0 and after["loaded"] > before["loaded"]
    assert after["top"]["health"]["definitions"]["degraded"] is False
    assert "degraded" not in after["screen"]
