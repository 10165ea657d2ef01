"""A stage's start, its nodes' outcomes and the stage's end with what it does to the
run, each one transaction.

Every write that announces something stores the announcing events in the same
transaction (`event` table: the run's log and the outbox); conditional writes THROW the
stale marker when the run is not in the expected state (StaleWriteError to the caller).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from stratum.clock import iso, utc_now
from stratum.events import Envelope
from stratum.runs.status import RunStatus
from stratum.store.database import CANCELLING_MARKER, STALE_MARKER
from stratum.store.guarded import RUN, GuardedWrites, event_rows, guard
from stratum.store.read_models import plain_record

STAGE = "type::thing('stage', [$run, $stage])"
# where a run is in a stage and a cancel may find it (`stratum.run.cancelling`)
AT_STAGE = "status IN ['Planned', 'Running'] AND current_stage = $stage"
CANCELLING_AT_STAGE = "status = 'Cancelling' AND current_stage = $stage"


def unless_cancelling(stale: str, *, same_resumption: bool = False) -> str:
    """What a write that found the run past where it expected throws: the cancelling
    marker when the run is being cancelled (the caller stops it instead; with
    `same_resumption`, only if the run is still in the writer's `$resumption`: a command
    from before a resume has nothing to stop), else `stale`. Read only when the guard
    failed: a write that goes through pays nothing for it."""
    ours = (
        f" AND ((SELECT VALUE resumptions FROM ONLY {RUN}) ?? 0) = $resumption"
        if same_resumption
        else ""
    )
    return (
        f"IF (SELECT VALUE status FROM ONLY {RUN}) = 'Cancelling'{ours} "
        f"{{ THROW '{CANCELLING_MARKER}: run ' + $run + ' is being cancelled' }} "
        f"ELSE {{ THROW '{stale}' }}"
    )


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
    result: to the next stage (`status` None), or Succeeded, Compensating, Failed or Held;
    for a run being cancelled (`cancelling`), Compensating or Cancelled."""

    status: RunStatus | None = None
    outputs_hash: str | None = None
    error: str | None = None
    cancelling: bool = False

    @property
    def condition(self) -> str:
        """Where the run must be for the change to apply."""
        return CANCELLING_AT_STAGE if self.cancelling else AT_STAGE

    def assignments(self) -> str:
        if self.cancelling and self.status not in (RunStatus.COMPENSATING, RunStatus.CANCELLED):
            raise ValueError(f"a cancelled stage's end cannot make a run {self.status}")
        if self.status is None:
            return "current_stage = $stage + 1"
        if self.status is RunStatus.SUCCEEDED:
            return "status = 'Succeeded', outputs_hash = $hash, finished_at = $now"
        if self.status is RunStatus.COMPENSATING:
            return "status = 'Compensating', error = $error"
        if self.status is RunStatus.FAILED:
            return "status = 'Failed', error = $error, finished_at = $now"
        if self.status is RunStatus.CANCELLED:
            return "status = 'Cancelled', error = $error, finished_at = $now"
        if self.status is RunStatus.HELD:  # waits at this stage for `stratum resume`
            return "status = 'Held', error = $error, held = {stage: $stage, at: $now}"
        raise ValueError(f"a stage's end cannot make a run {self.status}")


class Stages(GuardedWrites):
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
        resumption: int = 0,
    ) -> StageStart:
        """In one transaction: check the stage may start, mark the run Running and every
        node of the stage that has not already succeeded as running under `lease`
        (recording their NodeStarted events from `started`), and read back what the nodes
        need.

        Returns the run, its capabilities, the nodes to run with how many times each has
        been started (a node that already succeeded never runs again) and the run's node
        records. Only the holder of `lease` may then record the nodes' outcomes and the
        stage's result. StaleWriteError if the stage already ended or the run is past it
        (or in another `resumption`: a command from before a hold and resume is stale);
        CancellingError (nothing written) if the run is being cancelled.
        """
        stale = f"{STALE_MARKER}: stage {stage} of run {run_id}"
        results = await self.db.transaction(
            f"LET $stage_status = (SELECT VALUE status FROM ONLY {STAGE});\n"
            "IF $stage_status INSIDE ['Succeeded', 'Failed'] "
            f"{{ THROW '{stale} already ended' }};\n"
            f"LET $changed = (UPDATE {RUN} SET status = 'Running', "
            "started_at = started_at ?? $now, version += 1, updated_at = $now "
            # the graph version the run is at: what its nodes run with (kept on each)
            f"WHERE {AT_STAGE} AND (resumptions ?? 0) = $resumption "
            "RETURN VALUE graph_version);\n"
            "IF array::len($changed) = 0 "
            f"{{ {unless_cancelling(stale + ' is not current', same_resumption=True)} }};\n"
            "LET $done = (SELECT VALUE node FROM node_exec WHERE run = $run "
            "AND status = 'succeeded');\n"
            "LET $todo = array::complement($nodes, $done);\n"
            f"UPDATE {STAGE} SET status = 'Running', started_at = $now, lease = $lease "
            "RETURN NONE;\n"
            "FOR $node IN $todo { UPSERT type::thing('node_exec', [$run, $node]) SET "
            "run = $run, node = $node, stage = $stage, status = 'running', started_at = $now, "
            "lease = $lease, graph_version = $changed[0], executions += 1 RETURN NONE; };\n"
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
                "resumption": resumption,
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
        no longer holds the stage, or the run is no longer at it; CancellingError (nothing
        written) if the run is being cancelled and `then` does not stop it."""
        node, record, outputs = last_node or ("", {}, {})
        stale = f"{STALE_MARKER}: stage {stage} of run {run_id} was taken over"
        run_sql = ""
        if then is not None:
            run_sql = guard(
                then.condition,
                f"run {run_id} is past stage {stage}",
                then.assignments(),
                otherwise=None if then.cancelling else unless_cancelling,
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
