"""What operators do to runs (cancel, resume: `stratum.run.cancel`, `stratum.run.resume`;
rerun): the request as the run records it, a held run planned anew and running again, a
rerun created and linked both ways, and a cancelled stage's end when no execution of it
was running.

Every request an operator makes of a run is kept on the run record, in `interventions`
(who, what, when, what Cedar decided and which policies, what came of it): the audit
trail reads them from there. An accepted cancel is also the run's `cancel` (who and why),
which the stage executor and the compensator read to end the run Cancelled.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from stratum.clock import iso, utc_now
from stratum.events import Envelope
from stratum.store.guarded import RUN, GuardedWrites, event_rows
from stratum.store.plans import stages_sql
from stratum.store.stages import CANCELLING_AT_STAGE, STAGE

# a request is recorded once however often its message is delivered
NOT_RECORDED = "$request NOTINSIDE (interventions ?? []).request"


class Steering(GuardedWrites):
    async def record_intervention(self, run_id: str, entry: dict[str, Any]) -> None:
        """Keep a request on the run that changed nothing (refused by the policies, or
        made of a run that had ended). `entry["request"]` names it: recorded once."""
        await self.db.transaction(
            f"UPDATE {RUN} SET interventions = array::append(interventions ?? [], $entry) "
            f"WHERE {NOT_RECORDED} RETURN NONE;",
            {"run": run_id, "entry": entry, "request": entry["request"]},
            keys=(run_id,),
        )

    async def cancel_run(
        self,
        run_id: str,
        *,
        seen: str,
        status: str,
        entry: dict[str, Any],
        events: Sequence[Envelope],
        cause: str,
        finished: bool = False,
    ) -> None:
        """Move a run that is `seen` (its status when the request was decided) to `status`
        (Cancelling, or Cancelled when nothing had started: `finished`), keeping the
        request as the run's `cancel` and among its interventions, with `events`.
        StaleWriteError if the run moved since it was seen (decide again) or the request
        was recorded before."""
        await self._guarded(
            run_id,
            condition=f"status = $seen AND {NOT_RECORDED}",
            assignments="status = $status, cancel = $entry, "
            "interventions = array::append(interventions ?? [], $entry)"
            + (", finished_at = $now, error = $error" if finished else ""),
            what=f"run {run_id} moved from {seen} before the cancel was recorded",
            events=events,
            cause=cause,
            variables={
                "seen": seen,
                "status": status,
                "entry": entry,
                "request": entry["request"],
                "error": entry.get("error"),
            },
        )

    async def resume_run(
        self,
        run_id: str,
        *,
        resumption: int,
        graph_version: str,
        stages: Sequence[Sequence[str]],
        stage_links: Sequence[tuple[int, int, list[str]]],
        from_stage: int,
        entry: dict[str, Any],
        events: Sequence[Envelope],
        cause: str,
    ) -> None:
        """Run a Held run again, its `resumption`-th time: planned anew (`stages` with
        `graph_version`; the stage records replaced, those before `from_stage` Succeeded),
        Running at `from_stage`, the request kept among its interventions and `resumes`,
        with `events` (`stratum.run.resumed`, the stage's command). StaleWriteError if the
        run is no longer Held in the resumption before, or the request was recorded."""
        await self._guarded(
            run_id,
            condition="status = 'Held' AND (resumptions ?? 0) = $resumption - 1 "
            f"AND {NOT_RECORDED}",
            assignments="status = 'Running', resumptions = $resumption, "
            "graph_version = $version, plan = $stage_nodes, current_stage = $from_stage, "
            "error = NONE, held = NONE, resumes = array::append(resumes ?? [], $entry), "
            "interventions = array::append(interventions ?? [], $entry)",
            what=f"run {run_id} is no longer held for its resume {resumption}",
            events=events,
            cause=cause,
            extra_sql="DELETE stage WHERE run = $run RETURN NONE;\n"
            + stages_sql(len(stages), stage_links, done=from_stage),
            variables={
                "resumption": resumption,
                "version": graph_version,
                "stage_nodes": [list(stage) for stage in stages],
                "links": [caps for _, _, caps in stage_links],
                "from_stage": from_stage,
                "entry": entry,
                "request": entry["request"],
            },
        )

    async def rerun_run(
        self,
        original_id: str,
        record: dict[str, Any],
        status: str,
        entry: dict[str, Any],
        events: Sequence[Envelope],
        cause: str,
    ) -> None:
        """Create the rerun `record` (Accepted, or Denied and finished) and link it from
        the original (`reruns`, and the request among its interventions), with `events`
        (the new run's `run.accepted` or `run.denied`, the original's `run.rerun`), in one
        transaction."""
        now = iso(utc_now())
        created = {key: value for key, value in record.items() if key != "id"} | {
            "status": status,
            "created_at": now,
            "updated_at": now,
            "version": 1,
            "current_stage": -1,
        }
        link = {"run": record["id"], "status": status, "actor": entry["actor"], "at": entry["at"]}
        await self.db.transaction(
            "CREATE type::thing('run', $new) CONTENT $created RETURN NONE;\n"
            f"UPDATE {RUN} SET reruns = array::append(reruns ?? [], $link), "
            "interventions = array::append(interventions ?? [], $entry), "
            f"version += 1, updated_at = $now WHERE {NOT_RECORDED} RETURN NONE;\n"
            "INSERT IGNORE INTO event $events RETURN NONE;",
            {
                "run": original_id,
                "new": record["id"],
                "created": created,
                "link": link,
                "entry": entry,
                "request": entry["request"],
                "now": now,
                "events": event_rows(events, cause),
            },
            keys=(original_id, str(record["id"])),
        )

    async def stop_stage(
        self,
        run_id: str,
        stage: int,
        *,
        assignments: str,
        events: Sequence[Envelope],
        cause: str,
        error: str,
        resumption: int = 0,
    ) -> None:
        """End a stage of a cancelled run that no execution is running (its command came
        when the run was already Cancelling, or the execution that ran it died): the stage
        Failed, its nodes left `running` cancelled, the run changed by `assignments`
        (Compensating or Cancelled), with `events`. The stage's lease is taken over, so a
        late outcome of an execution still running somewhere is stale. StaleWriteError if
        the run is not Cancelling at this stage in this `resumption` (stopped before)."""
        await self._guarded(
            run_id,
            condition=f"{CANCELLING_AT_STAGE} AND (resumptions ?? 0) = $resumption",
            assignments=assignments,
            what=f"run {run_id} is not being cancelled at stage {stage}",
            events=events,
            cause=cause,
            extra_sql=(
                f"UPDATE {STAGE} SET status = 'Failed', finished_at = $now, lease = $lease "
                "RETURN NONE;\n"
                "UPDATE node_exec SET status = 'cancelled', finished_at = $now, error = $error, "
                "lease = $lease WHERE run = $run AND stage = $stage AND status = 'running' "
                "RETURN NONE;"
            ),
            variables={
                "stage": stage,
                "error": error,
                "resumption": resumption,
                "lease": "stopped-" + uuid.uuid4().hex,
            },
        )

    async def cancel_of(self, run_id: str) -> dict[str, Any] | None:
        """The accepted cancel of a run (who, why), or None."""
        rows = (await self.db.query(f"SELECT VALUE cancel FROM {RUN};", {"run": run_id}))[0]
        return rows[0] if rows and isinstance(rows[0], dict) else None
