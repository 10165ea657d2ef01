"""Human-readable output: tables for lists, a run as a headline, a timeline and what its
nodes produced."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from rich import box
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from stratum_host.cli.fmt import ms, status_text
from stratum_host.cli.timeline import Timeline

# characters `show` prints of one field of a node's output; `--json` has more
FIELD_LIMIT = 200


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
            given_up(letter),
            (letter.get("last_at") or "")[5:19].replace("T", " "),
            f"{redriven}x, {(letter.get('redriven_at') or '')[5:19].replace('T', ' ')}"
            if redriven
            else "-",
        )
    return table


def given_up(letter: dict[str, Any]) -> str:
    """Why a letter was given up on, in its deliveries column: invalid and permanent ones
    end at their first failure; the rest failed every delivery allowed."""
    if letter.get("invalid"):
        return "invalid"
    if letter.get("permanent"):
        return f"permanent ({letter['deliveries']})"
    return str(letter["deliveries"])


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
    if view.get("status") == "Cancelling":
        tree.add(Text(f"cancelling: asked by {view.get('cancelled_by')}", style="magenta"))
    held = view.get("held") if view.get("status") == "Held" else None
    if held:
        run = view["run_id"]
        failed = ", ".join(held.get("failed") or []) or "a node"
        branch = tree.add(
            Text(f"held at stage {held.get('stage')}: {failed} failed", style="yellow")
        )
        branch.add(f"`stratum resume {run}` runs it again from there, once what failed is fixed")
        branch.add(f"`stratum cancel {run}` undoes what it did")
    if view.get("rerun_of"):
        tree.add(Text(f"rerun of {view['rerun_of']}", style="dim"))
    for again in view.get("reruns") or []:
        tree.add(
            Text(
                f"rerun as {again.get('run')} ({again.get('status')}) by {again.get('actor')}",
                style="dim",
            )
        )
    for resumed in view.get("resumes") or []:
        tree.add(
            Text(
                f"resumed ({resumed.get('resumption')}) by {resumed.get('actor')} from stage "
                f"{resumed.get('from_stage')} with graph {resumed.get('graph_version')}",
                style="dim",
            )
        )
    asked = view.get("interventions") or []
    if asked:
        branch = tree.add(Text("interventions", style="dim"))
        for entry in asked:
            branch.add(intervention_line(entry))
    return tree


def intervention_line(entry: dict[str, Any]) -> Text:
    """One operator request of a run: when, what, who, what Cedar decided and how it went."""
    when = str(entry.get("at") or "")[11:19]
    reason = f" ({entry['reason']})" if entry.get("reason") else ""
    policies = ", ".join(entry.get("policy_ids") or []) or "no policy"
    line = Text(f"{when} {entry.get('action')} by {entry.get('actor')}{reason}: ")
    refused = entry.get("decision") == "deny"
    line.append(
        f"{'refused' if refused else 'allowed'} by {policies}", style="red" if refused else ""
    )
    outcome = str(entry.get("outcome") or "")
    if outcome and outcome != "refused":
        line.append(f" -> {outcome}")
    return line


def _cut(line: Text, text: str, size: int, where: str, limit: int) -> Text:
    """`text` on `line`, or its first `limit` characters saying how much that is of
    `size` bytes and where the rest is."""
    if len(text) <= limit:
        return line.append(text)
    shown = text[:limit]
    line.append(f"{shown}…")
    return line.append(f" (first {len(shown.encode())} of {size} bytes; {where})", style="yellow")


def _field(name: str, value: Any, limit: int) -> Text:
    # spaces after , and : so that a long value wraps there
    text = json.dumps(value, ensure_ascii=False, default=str)
    where = "`stratum show --json` has it whole"
    return _cut(Text(f"{name}: "), text, len(text.encode()), where, limit)


def add_output(tree: Tree, name: str, entry: dict[str, Any], limit: int = FIELD_LIMIT) -> None:
    """One produced capability under `tree`: an object a line per field (a digest stays
    visible beside a long list), anything else on one line; a long line is cut, saying
    how much is shown and where the whole value is (`--json`, or for a value the API
    cut too, the bundle's stdout)."""
    if "value" not in entry:
        where = f"whole value in {entry['whole']}" if entry.get("whole") else "cut by the API"
        tree.add(
            _cut(Text(f"{name}: ", style="bold"), entry["preview"], entry["bytes"], where, limit)
        )
        return
    value = entry["value"]
    if not isinstance(value, dict) or not value:
        line = _field(name, value, limit)
        line.stylize("bold", 0, len(name) + 1)
        tree.add(line)
        return
    branch = tree.add(Text(name, style="bold"))
    for key, item in value.items():
        branch.add(_field(str(key), item, limit))


def outputs_tree(view: dict[str, Any]) -> Tree | None:
    """What each node produced (the API's `outputs`), nodes in plan order."""
    outputs: dict[str, dict[str, Any]] = view.get("outputs") or {}
    if not outputs:
        return None
    planned = [node for stage in view.get("stages") or [] for node in stage["nodes"]]
    order = [n for n in planned if n in outputs] + sorted(set(outputs) - set(planned))
    tree = Tree(Text("outputs", style="dim"))
    for node in order:
        branch = tree.add(node)
        for name, entry in outputs[node].items():
            add_output(branch, name, entry)
    return tree


def run_detail(
    view: dict[str, Any], now: datetime | None = None, width: int = 32, *, outputs: bool = True
) -> Group:
    """`stratum show`: the headline, then the stages, nodes and compensation steps as a
    timeline (`now` draws a run still going up to now), then each step's error in full
    (kept out of the table so a long error does not squeeze the bars), then what each
    node produced (unless not `outputs`: after a cancel they have been undone)."""
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
    produced = outputs_tree(view) if outputs else None
    if produced is not None:
        parts.append(produced)
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
