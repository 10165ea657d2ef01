"""A run as a timeline: when each stage, node and compensation step started (from the
run's acceptance) and how long it took, with a bar drawn to scale.

Pure: the view (a `RunView` as the API returns it) and, for a run still going, `now` go
in; rows and a rich table come out. Nodes' times are their events' times, except that a
node's `duration_ms` (measured by the executor) wins over the gap between its events.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rich import box
from rich.console import Console, ConsoleOptions, RenderResult
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from stratum_host.cli.fmt import STATUS_STYLE, ms, offset

BAR = "█"
TRACK = "·"
NARROWEST = 8  # bar cells kept however narrow the terminal


@dataclass(frozen=True)
class Span:
    """One timeline row; times in ms from the run's start (None: not started / unknown)."""

    label: str
    kind: str  # "stage", "node", "saga" (a heading) or "step" (a compensation step)
    status: str
    start_ms: float | None = None
    took_ms: float | None = None
    attempts: int = 0
    open: bool = False  # still running: `took_ms` runs up to `now`

    @property
    def end_ms(self) -> float | None:
        if self.start_ms is None:
            return None
        return self.start_ms + (self.took_ms or 0.0)


def _at(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) and value else None


def _ms(later: datetime, earlier: datetime) -> float:
    return max(0.0, (later - earlier).total_seconds() * 1000)


def _node_span(label: str, node: dict[str, Any], origin: datetime, now: datetime | None) -> Span:
    started, finished = _at(node.get("started_at")), _at(node.get("finished_at"))
    took: float | None = node.get("duration_ms")
    status = node.get("status", "pending")
    start = _ms(started, origin) if started else None
    if start is None and finished is not None and took is not None:
        start = max(0.0, _ms(finished, origin) - took)  # failed before its start was seen
    if took is None and started is not None:
        end = finished or (now if status == "running" else None)
        took = _ms(end, started) if end is not None else None
    still = status == "running" and finished is None
    return Span(label, "node", status, start, took, int(node.get("attempts") or 0), still)


def spans(view: dict[str, Any], now: datetime | None = None) -> list[Span]:
    """Stages with their nodes (in plan order), then the compensation steps (in the order
    they ran). A stage spans its nodes: first start to last end."""
    origin = _at(view.get("created_at"))
    if origin is None:
        return []
    nodes = view.get("nodes") or {}
    rows: list[Span] = []
    for stage in view.get("stages") or []:
        children = [_node_span(name, nodes.get(name) or {}, origin, now) for name in stage["nodes"]]
        timed = [c for c in children if c.start_ms is not None]
        start = min((c.start_ms for c in timed if c.start_ms is not None), default=None)
        end = max((c.end_ms for c in timed if c.end_ms is not None), default=None)
        took = end - start if start is not None and end is not None else None
        still = any(c.open for c in children)
        label = f"stage {stage['index']}"
        rows.append(Span(label, "stage", stage["status"], start, took, open=still))
        rows.extend(children)
    steps = view.get("compensation") or []
    if steps:
        rows.append(Span("compensation (reverse order)", "saga", view.get("status", "")))
    for step in steps:
        at, took = _at(step.get("at")), float(step.get("duration_ms") or 0.0)
        start = max(0.0, _ms(at, origin) - took) if at else None
        label = f"{step['order'] + 1}. {step['node']} (stage {step['stage']})"
        rows.append(Span(label, "step", step["status"], start, took))
    return rows


def total_ms(view: dict[str, Any], rows: list[Span], now: datetime | None = None) -> float:
    """The scale's full width: the run's duration, else the latest end seen (or `now`)."""
    if view.get("duration_ms"):
        longest = float(view["duration_ms"])
    else:
        origin = _at(view.get("created_at"))
        longest = _ms(now, origin) if now is not None and origin is not None else 0.0
    ends = [r.end_ms for r in rows if r.end_ms is not None]
    return max([longest, *ends, 1.0])


def bar(start: float | None, took: float | None, total: float, width: int) -> str:
    """`width` cells for `total` ms: a track, with every cell the span touches filled (so a
    span that started shows at least one)."""
    if start is None:
        return TRACK * width
    first = min(width - 1, int(start / total * width))
    last = min(width, max(first + 1, math.ceil((start + (took or 0.0)) / total * width)))
    return TRACK * first + BAR * (last - first) + TRACK * (width - last)


def timeline_table(view: dict[str, Any], now: datetime | None = None, width: int = 32) -> Table:
    """The timeline as a table: name, status, start, took, and a bar `width` cells wide
    for the run's whole span."""
    rows = spans(view, now)
    total = total_ms(view, rows, now)
    end = ms(total)
    scale = Text("0" + end.rjust(width - 1) if width > len(end) + 1 else end, style="dim")
    table = Table(box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False, show_edge=False)
    table.add_column("timeline", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("start", justify="right", no_wrap=True)
    table.add_column("took", justify="right", no_wrap=True)
    table.add_column(scale, no_wrap=True, overflow="crop", width=width)
    for index, row in enumerate(rows):
        if row.kind == "saga":
            table.add_row(Text(row.label, style="yellow"))
            continue
        last = index + 1 == len(rows) or rows[index + 1].kind not in ("node", "step")
        indent = ("└─ " if last else "├─ ") if row.kind in ("node", "step") else ""
        name = Text(indent, style="dim")
        name.append(row.label, style="bold" if row.kind == "stage" else "")
        took = "…" if row.open and row.took_ms is None else ms(row.took_ms)
        took_text = Text(took + ("…" if row.open and row.took_ms is not None else ""))
        if row.attempts > 1:
            took_text.append(f" ({row.attempts} attempts)", style="dim")
        style = STATUS_STYLE.get(row.status, "")
        table.add_row(
            name,
            Text(row.status, style=style),
            offset(row.start_ms),
            took_text,
            Text(bar(row.start_ms, row.took_ms, total, width), style=style or "dim"),
        )
    return table


@dataclass(frozen=True)
class Timeline:
    """`timeline_table` with bars as wide as the console leaves room for (at most
    `width`), so a narrow terminal squeezes the bars, not the names and times."""

    view: dict[str, Any]
    now: datetime | None = None
    width: int = 32

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        rest = Measurement.get(console, options, timeline_table(self.view, self.now, 1)).maximum
        room = options.max_width - (rest - 1)
        yield timeline_table(self.view, self.now, max(NARROWEST, min(self.width, room)))
