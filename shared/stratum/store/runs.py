"""Domain-level reads and writes of runs, one method per state change.

Every write that announces something stores the announcing events in the same
transaction (`event` table: the run's log and the outbox), so the database always knows
about a change before the bus does. Conditional writes THROW a stale marker when the run
is not in the expected state; the caller sees StaleWriteError and treats the message as
already handled.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from stratum.clock import iso, utc_now
from stratum.events import Envelope
from stratum.runs.status import RunStatus
from stratum.store.audit import AuditTrail
from stratum.store.database import STALE_MARKER, Database
from stratum.store.dead_letters import DeadLetters
from stratum.store.guarded import RUN, event_rows, guard
from stratum.store.publishers import Publishers
from stratum.store.read_models import ReadModels, plain_record
from stratum.store.schema import SCHEMA
from stratum.store.tenancy import IN_PROGRESS, Tenancy, admission_sql

STAGE = "type::thing('stage', [$run, $stage])"


NODE_OUTCOME_SQL = (
    # only the execution that holds the node's lease may record its outcome: a late result
    # from an execution superseded by a redelivery (another instance took over) is stale
    "IF (SELECT VALUE lease FROM ONLY type::thing('node_exec', [$run, $node])) != $lease "
    f"{{ THROW '{STALE_MARKER}: node ' + $node + ' of run ' + $run + ' was taken over' }};\n"
    "UPSERT type::thing('node_exec', [$run, $node]) MERGE $record RETURN NONE;\n"
    "FOR $name IN object::keys($outputs) { UPSERT type::thing('capability', [$run, $name]) "
    "CONTENT {run: $run, name: $name, producer: $node, value: $outputs[$name]} "
    "RETURN NONE; };\n"
)


class StageStart(NamedTuple):
    """What `begin_stage` read back: the run, its capabilities, the nodes to run (with how
    many times each has been started) and every node record of the run."""

    run: dict[str, Any]
    capabilities: dict[str, Any]
    todo: dict[str, int]
    executions: dict[str, dict[str, Any]]


@dataclass(frozen=True)
class RunChange:
    """How a stage's end changes its run, in the transaction that stores the stage's
    result: to the next stage (`status` None), or Succeeded, Compensating or Failed."""

    status: RunStatus | None = None
    outputs_hash: str | None = None
    error: str | None = None

    def assignments(self) -> str:
        if self.status is None:
            return "current_stage = $stage + 1"
        if self.status is RunStatus.SUCCEEDED:
            return "status = 'Succeeded', outputs_hash = $hash, finished_at = $now"
        if self.status is RunStatus.COMPENSATING:
            return "status = 'Compensating', error = $error"
        if self.status is RunStatus.FAILED:
            return "status = 'Failed', error = $error, finished_at = $now"
        raise ValueError(f"a stage's end cannot make a run {self.status}")


class RunStore(ReadModels, DeadLetters, Publishers, AuditTrail, Tenancy):
    """Run state in SurrealDB. One instance per process, shared by the functions."""

    def __init__(self, database: Database) -> None:
        self.db = database

    async def ensure_schema(self) -> None:
        await self.db.query(SCHEMA)

    # -- shared -------------------------------------------------------------------------

    async def get_run(self, run_id: str) -> dict[str, Any] | None:
        rows = (await self.db.query(f"SELECT * FROM {RUN};", {"run": run_id}))[0]
        return plain_record(rows[0]) if rows else None

    async def events_caused_by(self, cause: str) -> list[Envelope]:
        """Events already recorded for a message: what a redelivery must re-publish."""
        rows = (
            await self.db.query(
                "SELECT envelope, time FROM event WHERE cause = $cause ORDER BY time;",
                {"cause": cause},
            )
        )[0]
        return [Envelope.from_bytes(row["envelope"].encode()) for row in rows]

    async def count_run_events(self, run_id: str) -> int:
        rows = (
            await self.db.query(
                "SELECT count() AS n FROM event WHERE run = $run GROUP ALL;", {"run": run_id}
            )
        )[0]
        return int(rows[0]["n"]) if rows else 0

    async def all_events(self) -> list[Envelope]:
        rows = (await self.db.query("SELECT envelope, time FROM event ORDER BY time;"))[0]
        return [Envelope.from_bytes(row["envelope"].encode()) for row in rows]

    # -- watchdog -----------------------------------------------------------------------

    async def quiet_runs(
        self, statuses: Sequence[str], before: str, limit: int = 200
    ) -> list[dict[str, Any]]:
        """Runs in one of `statuses` with nothing recorded since `before` (oldest first)."""
        rows = (
            await self.db.query(
                "SELECT * FROM run WHERE status INSIDE $statuses AND updated_at < $before "
                "ORDER BY updated_at LIMIT $limit;",
                {"statuses": list(statuses), "before": before, "limit": limit},
            )
        )[0]
        return [plain_record(row) for row in rows]

    async def last_event_of(
        self, run_id: str, types: Sequence[str]
    ) -> tuple[Envelope, dict[str, str]] | None:
        """The run's most recent recorded event of one of `types`, with the trace context
        (W3C headers) it was made in."""
        rows = (
            await self.db.query(
                "SELECT envelope, trace, time FROM event WHERE run = $run AND type INSIDE $types "
                "ORDER BY time DESC LIMIT 1;",
                {"run": run_id, "types": list(types)},
            )
        )[0]
        if not rows:
            return None
        return Envelope.from_bytes(rows[0]["envelope"].encode()), dict(rows[0].get("trace") or {})

    async def claim_stuck_run(self, run_id: str, seen_updated_at: str, now: str) -> int:
        """Claim a stuck run for driving: only if it has not moved since it was seen.
        Returns how many times it has been driven again; StaleWriteError if it moved."""
        stale = f"{STALE_MARKER}: run {run_id} moved since it was found stuck"
        results = await self.db.transaction(
            f"LET $changed = (UPDATE {RUN} SET redrives += 1, updated_at = $now "
            "WHERE updated_at = $seen RETURN VALUE redrives);\n"
            f"IF array::len($changed) = 0 {{ THROW '{stale}' }};\n"
            "RETURN $changed[0];",
            {"run": run_id, "seen": seen_updated_at, "now": now},
            keys=(run_id,),
        )
        return int(results[-1])

    # -- ingest -------------------------------------------------------------------------

    async def accept_run(self, run: dict[str, Any], event: Envelope, cause: str) -> bool:
        """Create the run; False if this (tenant, event id) already has one (the run id is
        derived from both, so the CREATE itself finds the duplicate)."""
        return await self._create_run(run, RunStatus.ACCEPTED, event, cause)

    async def deny_run(self, run: dict[str, Any], event: Envelope, cause: str) -> bool:
        """Create the run already Denied and finished, with its `run.denied` audit event;
        False if this (tenant, event id) already has a run (whatever was decided then)."""
        return await self._create_run(run, RunStatus.DENIED, event, cause)

    async def _create_run(
        self, run: dict[str, Any], status: RunStatus, event: Envelope, cause: str
    ) -> bool:
        now = iso(utc_now())
        record = {
            **run,
            "status": status.value,
            "created_at": now,
            "updated_at": now,
            "version": 1,
            "current_stage": -1,
        }
        try:
            await self.db.transaction(
                f"CREATE {RUN} CONTENT $record RETURN NONE;\n"
                "INSERT IGNORE INTO event $events RETURN NONE;",
                {
                    "run": run["id"],
                    "record": _without_id(record),
                    "events": event_rows([event], cause),
                },
                keys=(run["id"],),
            )
        except Exception as error:
            if "already exists" in str(error) or "already contains" in str(error):
                return False  # a redelivery, or a concurrent instance created it first
            raise
        return True

    async def record_rejection(self, rejection: dict[str, Any]) -> None:
        await self.db.query(
            "UPSERT type::thing('rejected_event', $id) CONTENT $record RETURN NONE;",
            {"id": rejection["id"], "record": _without_id(rejection)},
        )

    async def rejections(self, limit: int = 100) -> list[dict[str, Any]]:
        rows = (
            await self.db.query(
                "SELECT * FROM rejected_event ORDER BY at DESC LIMIT $limit;", {"limit": limit}
            )
        )[0]
        return [plain_record(row) for row in rows]

    # -- planner ------------------------------------------------------------------------

    async def save_graph(self, version: str, snapshot: dict[str, Any]) -> None:
        """Keep every graph version a run was planned with (immutable, so UPSERT is safe)."""
        await self.db.query(
            "UPSERT type::thing('graph', $version) CONTENT $snapshot RETURN NONE;",
            {"version": version, "snapshot": snapshot},
        )

    async def get_graph(self, version: str) -> dict[str, Any] | None:
        rows = (
            await self.db.query(
                "SELECT * FROM type::thing('graph', $version);", {"version": version}
            )
        )[0]
        return plain_record(rows[0]) if rows else None

    async def record_plan(
        self,
        run_id: str,
        *,
        graph_version: str,
        stages: Sequence[Sequence[str]],
        stage_links: Sequence[tuple[int, int, list[str]]],
        events: Sequence[Envelope],
        cause: str,
        tenant: str = "",
        limit: int = 0,
    ) -> None:
        """Store the plan: the run, a record per stage, and `feeds` relations between
        stages (which capabilities flow from one to the next). With a `limit`, only if
        `tenant` has fewer runs in progress or waiting ahead of this one — checked in the
        same transaction (AtLimitError otherwise, nothing written), so admitting a run
        costs no round trip of its own."""
        stage_sql = "\n".join(
            f"CREATE type::thing('stage', [$run, {index}]) CONTENT {{run: $run, index: {index}, "
            f"nodes: $stage_nodes[{index}], status: 'Pending'}} RETURN NONE;"
            for index in range(len(stages))
        )
        link_sql = "\n".join(
            f"RELATE (type::thing('stage', [$run, {src}]))"
            f"->feeds->(type::thing('stage', [$run, {dst}])) "
            f"SET capabilities = $links[{n}] RETURN NONE;"
            for n, (src, dst, _) in enumerate(stage_links)
        )
        await self._guarded(
            run_id,
            condition="status = 'Accepted'",
            assignments="status = 'Planned', graph_version = $version, plan = $stage_nodes, "
            "current_stage = 0",
            what=f"run {run_id} is already planned",
            events=events,
            cause=cause,
            extra_sql=stage_sql + "\n" + link_sql,
            before_sql=admission_sql(limit),
            variables={
                "tenant": tenant,
                "busy": IN_PROGRESS,
                "version": graph_version,
                "stage_nodes": [list(stage) for stage in stages],
                "links": [caps for _, _, caps in stage_links],
            },
        )

    async def reject_run(
        self, run_id: str, error: str, events: Sequence[Envelope], cause: str
    ) -> None:
        await self._guarded(
            run_id,
            condition="status = 'Accepted'",
            assignments="status = 'Failed', error = $error, finished_at = $now",
            what=f"run {run_id} is past Accepted",
            events=events,
            cause=cause,
            variables={"error": error},
        )

    # -- stage executor -----------------------------------------------------------------

    async def run_state(
        self, run_id: str
    ) -> tuple[dict[str, Any] | None, dict[str, dict[str, Any]], dict[str, Any]]:
        """The run, its node executions and its capabilities, in one round trip (what the
        compensator needs before undoing anything)."""
        run_rows, exec_rows, cap_rows = await self.db.query(
            f"SELECT * FROM {RUN};\n"
            "SELECT * FROM node_exec WHERE run = $run;\n"
            "SELECT name, value FROM capability WHERE run = $run;",
            {"run": run_id},
        )
        run = plain_record(run_rows[0]) if run_rows else None
        executions = {row["node"]: plain_record(row) for row in exec_rows}
        return run, executions, {row["name"]: row["value"] for row in cap_rows}

    async def capabilities(self, run_id: str) -> dict[str, Any]:
        rows = (
            await self.db.query(
                "SELECT name, value FROM capability WHERE run = $run;", {"run": run_id}
            )
        )[0]
        return {row["name"]: row["value"] for row in rows}

    async def node_executions(self, run_id: str) -> dict[str, dict[str, Any]]:
        rows = (await self.db.query("SELECT * FROM node_exec WHERE run = $run;", {"run": run_id}))[
            0
        ]
        return {row["node"]: plain_record(row) for row in rows}

    async def begin_stage(
        self,
        run_id: str,
        stage: int,
        nodes: Sequence[str],
        started: Sequence[Envelope],
        cause: str,
        lease: str,
    ) -> StageStart:
        """In one transaction: check the stage may start, mark the run Running and every
        node of the stage that has not already succeeded as running under `lease`
        (recording their NodeStarted events from `started`), and read back what the nodes
        need.

        Returns the run, its capabilities, the nodes to run with how many times each has
        been started (a node that already succeeded never runs again) and the run's node
        records. Only the holder of `lease` may then record the nodes' outcomes and the
        stage's result. StaleWriteError if the stage already ended or the run is past it.
        """
        stale = f"{STALE_MARKER}: stage {stage} of run {run_id}"
        results = await self.db.transaction(
            f"LET $stage_status = (SELECT VALUE status FROM ONLY {STAGE});\n"
            "IF $stage_status INSIDE ['Succeeded', 'Failed'] "
            f"{{ THROW '{stale} already ended' }};\n"
            f"LET $changed = (UPDATE {RUN} SET status = 'Running', "
            "started_at = started_at ?? $now, version += 1, updated_at = $now "
            "WHERE status IN ['Planned', 'Running'] AND current_stage = $stage RETURN VALUE id);\n"
            f"IF array::len($changed) = 0 {{ THROW '{stale} is not current' }};\n"
            "LET $done = (SELECT VALUE node FROM node_exec WHERE run = $run "
            "AND status = 'succeeded');\n"
            "LET $todo = array::complement($nodes, $done);\n"
            f"UPDATE {STAGE} SET status = 'Running', started_at = $now, lease = $lease "
            "RETURN NONE;\n"
            "FOR $node IN $todo { UPSERT type::thing('node_exec', [$run, $node]) SET "
            "run = $run, node = $node, stage = $stage, status = 'running', started_at = $now, "
            "lease = $lease, executions += 1 RETURN NONE; };\n"
            "INSERT IGNORE INTO event "
            "(SELECT * FROM $events WHERE node INSIDE $todo) RETURN NONE;\n"
            f"SELECT * FROM {RUN};\n"
            "SELECT * FROM node_exec WHERE run = $run;\n"
            "SELECT name, value FROM capability WHERE run = $run;",
            {
                "run": run_id,
                "stage": stage,
                "nodes": list(nodes),
                "now": iso(utc_now()),
                "events": event_rows(started, cause),
                "lease": lease,
            },
            keys=(run_id,),
        )
        run_rows, exec_rows, cap_rows = results[-3:]
        executions = {row["node"]: plain_record(row) for row in exec_rows}
        todo = {
            node: int(executions[node].get("executions") or 1)
            for node in nodes
            if executions.get(node, {}).get("status") != "succeeded"
        }
        return StageStart(
            plain_record(run_rows[0]),
            {row["name"]: row["value"] for row in cap_rows},
            todo,
            executions,
        )

    async def finish_node(
        self,
        run_id: str,
        node: str,
        record: dict[str, Any],
        outputs: dict[str, Any],
        events: Sequence[Envelope],
        cause: str,
        lease: str,
    ) -> None:
        """A node's outcome and the capabilities it produced, with its announcing event.
        StaleWriteError if `lease` no longer holds the node (see `begin_stage`)."""
        await self.db.transaction(
            NODE_OUTCOME_SQL + "INSERT IGNORE INTO event $events RETURN NONE;",
            {
                "run": run_id,
                "lease": lease,
                "node": node,
                "record": record,
                "outputs": outputs,
                "events": event_rows(events, cause),
            },
            keys=(run_id,),
        )

    async def finish_stage(
        self,
        run_id: str,
        stage: int,
        status: str,
        events: Sequence[Envelope],
        cause: str,
        *,
        lease: str,
        last_node: tuple[str, dict[str, Any], dict[str, Any]] | None = None,
        then: RunChange | None = None,
    ) -> None:
        """The stage's status and result; with `last_node` (id, record, outputs), the
        outcome of its last node too; with `then`, what the stage's end does to the run
        (the next stage, or the run's end) — all in one transaction, so a stage boundary
        is one write and one hop (the next stage's command). StaleWriteError if `lease`
        no longer holds the stage, or the run is no longer at it."""
        node, record, outputs = last_node or ("", {}, {})
        stale = f"{STALE_MARKER}: stage {stage} of run {run_id} was taken over"
        run_sql = ""
        if then is not None:
            run_sql = guard(
                "status IN ['Planned', 'Running'] AND current_stage = $stage",
                f"run {run_id} is past stage {stage}",
                then.assignments(),
            )
        await self.db.transaction(
            f"IF (SELECT VALUE lease FROM ONLY {STAGE}) != $lease {{ THROW '{stale}' }};\n"
            + (NODE_OUTCOME_SQL if last_node else "")
            + f"UPDATE {STAGE} SET status = $status, finished_at = $now RETURN NONE;\n"
            + run_sql
            + "\nINSERT IGNORE INTO event $events RETURN NONE;",
            {
                "run": run_id,
                "stage": stage,
                "status": status,
                "now": iso(utc_now()),
                "lease": lease,
                "node": node,
                "record": record,
                "outputs": outputs,
                "events": event_rows(events, cause),
                "hash": then.outputs_hash if then else None,
                "error": then.error if then else None,
            },
            keys=(run_id,),
        )

    # -- compensator --------------------------------------------------------------------

    async def compensations(self, run_id: str) -> dict[str, dict[str, Any]]:
        """Every saga step of the run by node, ended (`succeeded`, `failed`, `skipped`) or
        still `running` (started by a delivery that has not recorded its end)."""
        rows = (
            await self.db.query("SELECT * FROM compensation WHERE run = $run;", {"run": run_id})
        )[0]
        return {row["node"]: plain_record(row) for row in rows}

    async def begin_compensation(self, run_id: str, node: str) -> int:
        """Mark a saga step running; how many times it has been started, this one included
        (its attempts are numbered in a block of their own, as a stage's nodes are)."""
        rows = (
            await self.db.query(
                "UPSERT type::thing('compensation', [$run, $node]) SET run = $run, node = $node, "
                "status = 'running', started_at = $now, executions += 1 "
                "RETURN VALUE executions;",
                {"run": run_id, "node": node, "now": iso(utc_now())},
            )
        )[0]
        return int(rows[0])

    async def record_compensation(
        self, run_id: str, node: str, record: dict[str, Any], events: Sequence[Envelope], cause: str
    ) -> None:
        """Record how a saga step ended, with the event announcing it."""
        await self.db.transaction(
            "UPSERT type::thing('compensation', [$run, $node]) MERGE $record RETURN NONE;\n"
            "INSERT IGNORE INTO event $events RETURN NONE;",
            {
                "run": run_id,
                "node": node,
                "record": {**record, "run": run_id, "node": node},
                "events": event_rows(events, cause),
            },
        )

    async def finish_compensation(
        self, run_id: str, failed: list[str], events: Sequence[Envelope], cause: str
    ) -> None:
        """End the saga: Compensated, or CompensationFailed when any step in `failed`."""
        status = RunStatus.COMPENSATION_FAILED if failed else RunStatus.COMPENSATED
        await self._guarded(
            run_id,
            condition="status = 'Compensating'",
            assignments=("status = $status, failed_compensations = $failed, finished_at = $now"),
            what=f"run {run_id} is not compensating",
            events=events,
            cause=cause,
            variables={"failed": failed, "status": status.value},
        )


def _without_id(record: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in record.items() if key != "id"}
