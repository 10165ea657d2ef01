"""Stratum's Prometheus metrics: every name, label and unit in one place.

Names start with `stratum_`, values are in base units (seconds), and labels stay
low-cardinality: tenant, function, node, status, reason, kind, event type — never a run or
event id. All of them live in one registry (`REGISTRY`), which `/metrics` serves; in the
single-process `stratum up` that one endpoint covers every function.

Where each is counted, and why there:
- runs by status and run durations: the projector, when a run's view enters a status.
  Folding is idempotent, so a redelivered event changes nothing and counts nothing.
- node durations and stage fan-out: the stage executor, per execution it ran.
- compensation steps: the compensator, per step it recorded.
- denials: ingest; dead letters and handled messages: the JetStream runner.
- operators' requests of runs (cancel): refusals by the API that asked Cedar, the rest by
  the planner as it applies them.
- queue depth: read from each function's JetStream consumer when `/metrics` is scraped.
- graph reloads and the graph version: the graph registry.
- degraded (a reload error pending, the previous version serving) and the time of the last
  good load, of the definitions and of the policies: their registries (`stratum.telemetry.health`).
- database transactions: `stratum.store.Database`, the one way every query goes out.
- events published: `stratum.runtime.Publisher`, the one way the functions' events go out.
  These two say what a run costs in round trips (`python -m bench.pipeline` divides them
  by the runs it made).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

REGISTRY = CollectorRegistry(auto_describe=True)

# run and node durations: scripts take from tens of milliseconds to many minutes
_DURATION_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)

RUNS = Counter(
    "stratum_runs",
    "Runs that entered a status (accepted, planned, running, succeeded, failed, "
    "compensating, compensated, compensation_failed, denied, cancelling, cancelled, held; "
    "a resumed run enters running again), by "
    "tenant; every accepted run that failed enters failed once: it ends there when nothing "
    "it did can be undone, else it goes on to compensating and compensated or "
    "compensation_failed; a cancelled one goes from cancelling (or straight from accepted) "
    "to cancelled, through compensating when something it did is undone",
    ["tenant", "status"],
    registry=REGISTRY,
)
RUN_DURATION = Histogram(
    "stratum_run_duration_seconds",
    "From a run's acceptance to its final status (succeeded, failed, compensated, "
    "compensation_failed, denied)",
    ["tenant", "status"],
    buckets=_DURATION_BUCKETS,
    registry=REGISTRY,
)
NODE_DURATION = Histogram(
    "stratum_node_duration_seconds",
    "One node execution (all its attempts), by outcome: succeeded, failed, cancelled",
    ["tenant", "node", "status"],
    buckets=_DURATION_BUCKETS,
    registry=REGISTRY,
)
STAGE_FANOUT = Histogram(
    "stratum_stage_fanout_nodes",
    "Nodes a stage ran in parallel",
    ["tenant"],
    buckets=(1, 2, 3, 4, 6, 8, 12, 16, 32, 64),
    registry=REGISTRY,
)
COMPENSATIONS = Counter(
    "stratum_compensations",
    "Compensation steps recorded, by outcome: succeeded, failed (after retries), skipped",
    ["tenant", "node", "status"],
    registry=REGISTRY,
)
INTERVENTIONS = Counter(
    "stratum_interventions",
    "Operators' requests of runs, by tenant, action (cancel, resume, rerun) and outcome: "
    "refused (by the policies); a cancel: cancelling (its stage is being stopped), "
    "compensating (it was held: undone at once), cancelled (nothing had started or nothing "
    "could be undone), ignored (the run had ended or was already being stopped or undone); "
    "a resume: resumed, ignored (not held, or not plannable now); a rerun: accepted or "
    "denied (its trigger decided again)",
    ["tenant", "action", "outcome"],
    registry=REGISTRY,
)
DEAD_LETTERS = Counter(
    "stratum_dead_letters",
    "Messages given up on and kept as dead letters",
    ["function", "tenant"],
    registry=REGISTRY,
)
MESSAGES = Counter(
    "stratum_messages",
    "Messages a function settled: acked, retried (a nak; over HTTP a 429 or 500), "
    "dead_lettered, or rejected (over HTTP: not an event this function can take)",
    ["function", "outcome"],
    registry=REGISTRY,
)
HANDLER_DURATION = Histogram(
    "stratum_handler_duration_seconds",
    "Time a function spent on one message, from receipt to settlement",
    ["function"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 60),
    registry=REGISTRY,
)
QUEUE_DEPTH = Gauge(
    "stratum_queue_depth",
    "Messages waiting for a function: its JetStream consumer's pending count (lag)",
    ["function"],
    registry=REGISTRY,
)
QUEUE_IN_FLIGHT = Gauge(
    "stratum_queue_in_flight",
    "Messages a function was given and has not acknowledged yet",
    ["function"],
    registry=REGISTRY,
)
EVENTS_DENIED = Counter(
    "stratum_events_denied",
    "Publishers' events that started no run, by reason: invalid, unverified, policy, rate_limited",
    ["tenant", "reason"],
    registry=REGISTRY,
)
GRAPH_RELOADS = Counter(
    "stratum_graph_reloads",
    "Loads of the workflow definitions, by result: ok, failed (the previous graph stays)",
    ["result"],
    registry=REGISTRY,
)
GRAPH = Info(
    "stratum_graph",
    "The workflow graph version in use",
    registry=REGISTRY,
)
DEFINITIONS_DEGRADED = Gauge(
    "stratum_definitions_degraded",
    "1 while the last reload of the workflow definitions failed (the previous graph "
    "serves; /healthz says why and since when), or none was ever loaded; else 0",
    registry=REGISTRY,
)
DEFINITIONS_LOADED = Gauge(
    "stratum_definitions_loaded_timestamp_seconds",
    "When the workflow definitions last loaded successfully (Unix time)",
    registry=REGISTRY,
)
POLICIES_DEGRADED = Gauge(
    "stratum_policies_degraded",
    "1 while the last reload of the Cedar policies failed (the previous set serves), or "
    "none was ever loaded; else 0",
    registry=REGISTRY,
)
POLICIES_LOADED = Gauge(
    "stratum_policies_loaded_timestamp_seconds",
    "When the Cedar policies last loaded successfully (Unix time)",
    registry=REGISTRY,
)
DB_TRANSACTIONS = Counter(
    "stratum_db_transactions",
    "Round trips to SurrealDB (one query, or one BEGIN..COMMIT transaction), by kind: "
    "write (it creates, updates, deletes or defines something) or read; a write conflict "
    "retried is another round trip",
    ["kind"],
    registry=REGISTRY,
)
EVENTS_PUBLISHED = Counter(
    "stratum_events_published",
    "Events the functions published to JetStream (acknowledged by it), by event type "
    "(`stratum.run.accepted`...); a watchdog re-drive counts too",
    ["type"],
    registry=REGISTRY,
)

# denial reasons (the `reason` label of stratum_events_denied_total)
DENIED_INVALID = "invalid"
DENIED_UNVERIFIED = "unverified"
DENIED_POLICY = "policy"
DENIED_RATE_LIMITED = "rate_limited"


def exported_names() -> set[str]:
    """Every sample name `/metrics` can show (`_total`, `_bucket`, `_info`... included):
    what dashboards and alerts may query."""
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "gauge": ("",),
        "info": ("_info",),
    }
    return {
        metric.name + suffix
        for metric in REGISTRY.collect()
        for suffix in suffixes.get(metric.type, ("",))
    }
