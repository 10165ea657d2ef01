"""Human-readable output: tables for lists, a run as a headline and a timeline."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rich import box
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from stratum.cli.fmt import ms, status_text
from stratum.cli.timeline import Timeline


def runs_table(runs: list[dict[str, Any]]) -> Table:
    table = Table(title="Runs", title_justify="left", box=box.SIMPLE_HEAD, padding=(0, 1))
    rows = [
        (
            run["run_id"],
            run["tenant"],
            run.get("topic") or "-",
            run["status"],
            ms(run.get("duration_ms")),
            (run.get("created_at") or "")[5:16].replace("T", " "),
        )
        for run in runs
    ]
    for column in ("run", "tenant", "topic", "status", "took", "created (UTC)"):
        table.add_column(column)
    for row in rows:
        table.add_row(*row[:3], status_text(row[3]), *row[4:])
    return table


def dead_letters_table(letters: list[dict[str, Any]]) -> Table:
    table = Table(title="Dead letters", title_justify="left", box=box.SIMPLE_HEAD, padding=(0, 1))
    for column in ("id", "function", "subject", "error", "deliveries", "when (UTC)", "redriven"):
        table.add_column(column, overflow="fold" if column == "error" else "ellipsis")
    for letter in letters:
        redriven = letter.get("redriven") or 0
        table.add_row(
            letter["id"],
            letter["function"],
            letter["subject"],
            Text(letter["error"][:160], style="red"),
            "invalid" if letter.get("invalid") else str(letter["deliveries"]),
            (letter.get("last_at") or "")[5:19].replace("T", " "),
            f"{redriven}x, {(letter.get('redriven_at') or '')[5:19].replace('T', ' ')}"
            if redriven
            else "-",
        )
    return table


def run_tree(view: dict[str, Any]) -> Tree:
    """The run's headline: status, trace, what triggered it, and why it failed or was denied."""
    title = Text.assemble(
        (view["run_id"], "bold"),
        "  ",
        status_text(view["status"]),
        f"  {view['tenant']}/{view.get('topic') or '?'}  {ms(view.get('duration_ms'))}",
    )
    tree = Tree(title)
    trace = view.get("trace_id")
    tree.add(Text(f"trace: {trace}") if trace else Text("trace: none (tracing off)", style="dim"))
    meta = tree.add(Text("details", style="dim"))
    for label in ("actor", "event_id", "graph_version", "inputs_hash", "outputs_hash"):
        if view.get(label):
            meta.add(f"{label}: {view[label]}")
    if view.get("error"):
        label = "denied" if view["status"] == "Denied" else "error"
        tree.add(Text(f"{label}: {view['error']}", style="red"))
    if view.get("policy_ids"):
        tree.add(Text(f"policies: {', '.join(view['policy_ids'])}", style="red"))
    return tree


def run_detail(view: dict[str, Any], now: datetime | None = None, width: int = 32) -> Group:
    """`stratum show`: the headline, then the stages, nodes and compensation steps as a
    timeline (`now` draws a run still going up to now), then each step's error in full
    (kept out of the table so a long error does not squeeze the bars)."""
    parts: list[Any] = [run_tree(view)]
    if view.get("stages") or view.get("compensation"):
        parts.append(Timeline(view, now, width))
    nodes = view.get("nodes") or {}
    errors = [(name, node["error"]) for name, node in nodes.items() if node.get("error")] + [
        (f"compensate {step['node']}", step["error"])
        for step in view.get("compensation") or []
        if step.get("error")
    ]
    for name, error in errors:
        if error == view.get("error"):
            continue  # the headline already says it
        named = error.startswith(f"node {name}")
        parts.append(Text.assemble("" if named else f"{name}: ", (error, "red")))
    return Group(*parts)


def plan_text(topic: str, stages: list[list[str]], note: str = "") -> Tree:
    """The stages as a tree; `note` (which graph it is from) beside the heading."""
    heading = Text(f"plan for {topic}", style="bold")
    if note:
        heading.append(f"  ({note})", style="dim")
    tree = Tree(heading)
    for index, stage in enumerate(stages):
        tree.add(f"stage {index}: {', '.join(stage)}")
    return tree


def print_json(console: Console, value: Any) -> None:
    import orjson

    console.file.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")
