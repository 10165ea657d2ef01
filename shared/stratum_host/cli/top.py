"""`stratum top`'s numbers: Stratum's `/metrics` text folded into one small snapshot (with
what `/healthz` says of the definitions and policies in force), and that snapshot as
tables.

Pure (text in, model or renderable out) so it is tested without servers. Run counts are
how many runs *entered* each status since Stratum started (`stratum_runs_total`), not how
many are in it now; a status label is shown as the server spells it.
"""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel
from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

from stratum.runs.status import RunStatus
from stratum.telemetry.health import LoadState
from stratum_host.cli.fmt import STATUS_STYLE, count

# settlement outcomes of `stratum_messages_total`, in the order a reader wants them;
# `dead_lettered` is left to the dead letters column (`stratum_dead_letters_total`)
OUTCOMES = ("acked", "retried")
DEAD = "dead_lettered"


class Queue(BaseModel):
    """One function's consumer: waiting and unacknowledged messages, and how the ones it
    settled ended (`outcome` → count)."""

    waiting: float = 0.0
    in_flight: float = 0.0
    settled: dict[str, float] = {}
    dead_letters: float = 0.0


class Snapshot(BaseModel):
    """Everything `stratum top` shows, summed over the label it does not show."""

    graph_version: str | None = None
    runs: dict[str, dict[str, float]] = {}  # tenant → status → runs that entered it
    queues: dict[str, Queue] = {}  # function → its queue
    denied: dict[str, float] = {}  # reason → events that started no run
    compensations: dict[str, float] = {}  # outcome → compensation steps
    # from /healthz: "definitions", "policies" → in force, or degraded since when and why
    health: dict[str, LoadState] = {}

    def run_totals(self) -> dict[str, float]:
        """Runs per status, all tenants together."""
        totals: dict[str, float] = {}
        for statuses in self.runs.values():
            for status, value in statuses.items():
                totals[status] = totals.get(status, 0) + value
        return totals


def _add(into: dict[str, float], key: str, value: float) -> None:
    into[key] = into.get(key, 0) + value


def parse(text: str) -> Snapshot:
    """The snapshot in Prometheus exposition `text` (other metrics are ignored)."""
    snap = Snapshot()

    def queue(labels: dict[str, str]) -> Queue:
        return snap.queues.setdefault(labels.get("function", "?"), Queue())

    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name, labels, value = sample.name, sample.labels, sample.value
            if name == "stratum_runs_total":
                tenant = snap.runs.setdefault(labels.get("tenant", "?"), {})
                _add(tenant, labels.get("status", "?"), value)
            elif name == "stratum_queue_depth":
                queue(labels).waiting = value
            elif name == "stratum_queue_in_flight":
                queue(labels).in_flight = value
            elif name == "stratum_messages_total":
                _add(queue(labels).settled, labels.get("outcome", "?"), value)
            elif name == "stratum_dead_letters_total":
                queue(labels).dead_letters += value
            elif name == "stratum_events_denied_total":
                _add(snap.denied, labels.get("reason", "?"), value)
            elif name == "stratum_compensations_total":
                _add(snap.compensations, labels.get("status", "?"), value)
            elif name == "stratum_graph_info" and value:
                snap.graph_version = labels.get("version")
    return snap


def with_health(snap: Snapshot, health: dict[str, Any]) -> Snapshot:
    """`snap` with the parts a `/healthz` answer reports (a server that reports none
    leaves it as it is)."""
    parts = ("definitions", "policies")
    found = {name: LoadState.model_validate(health[name]) for name in parts if name in health}
    return snap.model_copy(update={"health": found})


def _status_rank(status: str) -> tuple[int, str]:
    """Statuses in run-life order, however the label spells them (`compensation_failed`,
    `CompensationFailed`); unknown ones last."""
    plain = status.replace("_", "").lower()
    for known in RunStatus:
        if known.value.lower() == plain:
            return known.rank, status
    return len(RunStatus), status


def _style(status: str) -> str:
    for known in RunStatus:
        if known.value.lower() == status.replace("_", "").lower():
            return STATUS_STYLE.get(known.value, "")
    return STATUS_STYLE.get(status, "")


def runs_table(snap: Snapshot) -> Table:
    statuses = sorted(snap.run_totals(), key=_status_rank)
    table = Table(title="Runs (entered each status)", title_justify="left", box=box.SIMPLE_HEAD)
    table.add_column("tenant")
    for status in statuses:
        table.add_column(Text(status, style=_style(status)), justify="right")
    for tenant in sorted(snap.runs):
        table.add_row(tenant, *(count(snap.runs[tenant].get(s, 0)) for s in statuses))
    if len(snap.runs) > 1:
        totals = snap.run_totals()
        table.add_row(Text("all", style="bold"), *(count(totals[s]) for s in statuses))
    return table


def queues_table(snap: Snapshot) -> Table:
    seen = {o for q in snap.queues.values() for o in q.settled} - {DEAD}
    outcomes = [o for o in OUTCOMES if o in seen] + sorted(seen - set(OUTCOMES))
    table = Table(title="Queues", title_justify="left", box=box.SIMPLE_HEAD)
    for column in ("function", "waiting", "in flight", *outcomes, "dead letters"):
        table.add_column(
            column.replace("_", " "), justify="left" if column == "function" else "right"
        )
    for function in sorted(snap.queues):
        q = snap.queues[function]
        waiting = Text(count(q.waiting), style="bold yellow" if q.waiting else "")
        table.add_row(
            function,
            waiting,
            count(q.in_flight),
            *(count(q.settled.get(o, 0)) for o in outcomes),
            Text(count(q.dead_letters), style="red" if q.dead_letters else ""),
        )
    return table


def _counts(label: str, values: dict[str, float]) -> Text:
    line = Text(f"{label}: ", style="dim")
    line.append(", ".join(f"{k} {count(v)}" for k, v in sorted(values.items())) or "none")
    return line


def degraded_lines(snap: Snapshot) -> list[Text]:
    """One line per degraded part: since when, what still serves, and the error."""
    lines = []
    for name, part in snap.health.items():
        if not part.degraded:
            continue
        line = Text(f"{name} degraded", style="bold red")
        line.append(f" since {part.since}" if part.since else "")
        serving = f"{part.version} still serving" if part.version else "nothing in force"
        line.append(f" ({serving}): ")
        line.append(part.error or "never loaded", style="red")
        lines.append(line)
    return lines


def top_view(snap: Snapshot, where: str = "") -> Group:
    """The whole screen: headline, what is degraded, runs, queues, denials and
    compensation steps."""
    head = Text("stratum top", style="bold")
    head.append(f"  graph {snap.graph_version or '?'}")
    if where:
        head.append(f"  {where}", style="dim")
    parts: list[Any] = [head, *degraded_lines(snap), runs_table(snap), queues_table(snap)]
    parts += [
        _counts("denied events", snap.denied),
        _counts("compensation steps", snap.compensations),
    ]
    return Group(*parts)
