"""`stratum plan TOPIC [--live]`: the stages an event on TOPIC would run.

From the files on disk by default, and a broken file does not stop it: the topic is planned
from the files that load, the plan marked so (the full definitions may plan it otherwise,
and a running Stratum refuses them) and every problem listed. `--live` asks the running
Stratum instead, for the plan of the graph it actually uses, with that graph's version.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from stratum.config import Settings
from stratum.errors import PlanError
from stratum_host.cli import render

if TYPE_CHECKING:  # stratum.graph loads Nickel: only `plan` itself needs it
    from stratum.graph import PartialGraph

PLANNED, CANNOT_PLAN, PLANNED_WITH_PROBLEMS = 0, 1, 3
# its own options (as oci.py): main imports this module, so this one cannot import main
ConfigOption = typer.Option(None, "--config", "-c", help="Nickel startup config")
JsonOption = typer.Option(False, "--json", help="Machine-readable JSON output.")
# one line per paragraph: the help is rich text, whose line breaks are kept
HELP = "\n\n".join(
    [
        "The stages an event on TOPIC would run: from the definitions on disk, or with --live "
        "from the graph the running Stratum uses (with its version).",
        "On disk, a broken workflow file does not stop the plan: it is made from the files "
        "that load and marked so, and every problem is printed on stderr as file:line:col "
        '(in --json: "problems"). Such a plan is not authoritative: the broken files may '
        "change it, and a running Stratum refuses those definitions and keeps its graph.",
        "Exit codes:\n"
        "  0  planned (definitions clean; or --live)\n"
        "  1  TOPIC cannot be planned (nothing triggered, a producer missing or doubled, a "
        "cycle); with --live also: Stratum not reachable\n"
        "  2  wrong usage\n"
        "  3  planned, but the definitions have problems: the plan is from the files that load",
    ]
)


def plan(
    topic: str = typer.Argument(..., help="Event topic, e.g. crate.push"),
    live: bool = typer.Option(
        False, "--live", help="Ask the running Stratum for the plan of the graph it uses."
    ),
    as_json: bool = JsonOption,
    config: Path | None = ConfigOption,
) -> None:
    """The stages of TOPIC, on disk or --live (the help is `HELP`)."""
    from stratum_host.cli.main import settings_from  # main imports this module: not at the top

    settings = settings_from(config)
    if live:
        _live(settings, topic, as_json)
    else:
        raise typer.Exit(_on_disk(settings, topic, as_json))


def _on_disk(settings: Settings, topic: str, as_json: bool) -> int:
    from stratum.graph import load_partial
    from stratum.graph import plan as make_plan
    from stratum_host.cli.main import definitions_of, fail, out

    loaded = load_partial(definitions_of(settings), settings.lib_dir)
    for problem in loaded.problems:
        sys.stderr.write(f"{problem}\n")
    note = partial_note(loaded)
    try:
        chosen = make_plan(loaded.graph, topic)
    except PlanError as error:
        fail(f"{error} ({note}{_left_out(loaded)})" if note else str(error), CANNOT_PLAN)
    stages = [list(stage) for stage in chosen.stages]
    if as_json:
        render.print_json(out, disk_body(loaded, topic, stages))
    else:
        out.print(render.plan_text(topic, stages, note or f"graph {chosen.graph_version}"))
    if loaded.complete:
        return PLANNED
    sys.stderr.write(f"warning: {not_authoritative(loaded, topic)}\n")
    return PLANNED_WITH_PROBLEMS


def partial_note(loaded: PartialGraph) -> str:
    """How a plan from `loaded` is to be read ("" when the definitions are clean)."""
    if loaded.complete:
        return ""
    if loaded.left_out:
        return f"from the files that load; {len(loaded.broken_files)} file(s) broken"
    problems, files = len(loaded.problems), len(loaded.broken_files)
    return f"from definitions with {problems} problem(s) in {files} file(s)"


def not_authoritative(loaded: PartialGraph, topic: str) -> str:
    return (
        f"this plan is not authoritative: it is {partial_note(loaded)}{_left_out(loaded)}. "
        "A running Stratum refuses these definitions and keeps its graph: "
        f"`stratum plan {topic} --live` shows the plan it uses."
    )


def _left_out(loaded: PartialGraph) -> str:
    if not loaded.left_out:
        return ""
    files = ", ".join(_shown(file) for file in loaded.left_out)
    return f"; left out, so without their nodes: {files}"


def disk_body(loaded: PartialGraph, topic: str, stages: list[list[str]]) -> dict[str, Any]:
    """The --json answer: the plan, and whether (and why not) it is authoritative."""
    return {
        "topic": topic,
        "source": "disk",
        # a partial graph's hash is no version any Stratum would load
        "graph_version": loaded.graph.version if loaded.complete else None,
        "stages": stages,
        "complete": loaded.complete,
        "broken_files": [_shown(file) for file in loaded.broken_files],
        "left_out": [_shown(file) for file in loaded.left_out],
        "problems": [
            {
                "file": _shown(problem.file),
                "line": problem.line,
                "column": problem.column,
                "message": problem.message,
            }
            for problem in loaded.problems
        ],
    }


def _live(settings: Settings, topic: str, as_json: bool) -> None:
    from stratum_host.cli.main import api_get, out

    graph = api_get(settings, "/api/graph")
    chosen = api_get(settings, "/api/plan", {"topic": topic})
    version = chosen["graph_version"]
    # the error of the last reload, if it was refused while this version stayed live
    refused = graph["error"] if graph["version"] == version else None
    if as_json:
        render.print_json(
            out,
            {
                "topic": topic,
                "source": "live",
                "graph_version": version,
                "stages": chosen["stages"],
                "graph_error": refused,
            },
        )
    else:
        out.print(render.plan_text(topic, chosen["stages"], f"live graph {version}"))
    if refused:
        first = refused.splitlines()[0]
        sys.stderr.write(
            f"note: the running Stratum refused its latest definitions and keeps graph "
            f"{version}: {first}\n"
        )


def _shown(path: Path) -> str:
    from stratum.graph.problems import display_path

    return display_path(path)
