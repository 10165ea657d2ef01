"""Human-readable output: tables for lists, a stage tree with timings for a run."""

from __future__ import annotations

from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

STATUS_STYLE = {
    "Succeeded": "green",
    "succeeded": "green",
    "Compensated": "yellow",
    "Compensating": "yellow",
    "CompensationFailed": "red",
    "Failed": "red",
    "failed": "red",
    "cancelled": "magenta",
    "Running": "cyan",
    "running": "cyan",
    "Planned": "blue",
    "Accepted": "blue",
    "Denied": "red",
    "skipped": "dim",
    "pending": "dim",
}


def status_text(status: str) -> Text:
    return Text(status, style=STATUS_STYLE.get(status, ""))


def ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.0f} ms" if value < 10_000 else f"{value / 1000:.1f} s"


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
    title = Text.assemble(
        (view["run_id"], "bold"),
        "  ",
        status_text(view["status"]),
        f"  {view['tenant']}/{view.get('topic') or '?'}  {ms(view.get('duration_ms'))}",
    )
    tree = Tree(title)
    meta = tree.add(Text("details", style="dim"))
    for label in ("actor", "event_id", "graph_version", "inputs_hash", "outputs_hash"):
        if view.get(label):
            meta.add(f"{label}: {view[label]}")
    if view.get("error"):
        label = "denied" if view["status"] == "Denied" else "error"
        tree.add(Text(f"{label}: {view['error']}", style="red"))
    if view.get("policy_ids"):
        tree.add(Text(f"policies: {', '.join(view['policy_ids'])}", style="red"))
    nodes = view.get("nodes", {})
    for stage in view.get("stages", []):
        branch = tree.add(Text.assemble(f"stage {stage['index']}  ", status_text(stage["status"])))
        for name in stage["nodes"]:
            node = nodes.get(name, {})
            line = Text.assemble(
                f"{name}  ",
                status_text(node.get("status", "pending")),
                f"  {ms(node.get('duration_ms'))}",
            )
            if node.get("attempts", 0) > 1:
                line.append(f"  ({node['attempts']} attempts)", style="dim")
            if node.get("error"):
                line.append(f"  {node['error']}", style="red")
            branch.add(line)
    steps = view.get("compensation", [])
    if steps:
        saga = tree.add(Text("compensation (reverse order)", style="yellow"))
        for step in steps:
            line = Text.assemble(
                f"{step['order'] + 1}. {step['node']} (stage {step['stage']})  ",
                status_text(step["status"]),
                f"  {ms(step.get('duration_ms'))}",
            )
            if step.get("error"):
                line.append(f"  {step['error']}", style="red")
            saga.add(line)
    return tree


def plan_text(topic: str, stages: list[list[str]]) -> Tree:
    tree = Tree(Text(f"plan for {topic}", style="bold"))
    for index, stage in enumerate(stages):
        tree.add(f"stage {index}: {', '.join(stage)}")
    return tree


def print_json(console: Console, value: Any) -> None:
    import orjson

    console.file.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")
