"""`POST /api/runs/{id}/cancel`, `/resume` and `/rerun`: an operator's request to stop a
run, to run a held one again from the stage it failed in, or to start a new run of its
trigger event, decided by Cedar.

Who asks is the caller the signed-request middleware verified (`stratum_host.api.auth`):
the operator (`Stratum::Operator`), or a registered publisher, who sees only its own
tenant's runs. Without signatures (local development) the caller is an unverified
`Stratum::Source` named by the `Stratum-Caller` header. Cedar decides
(`Stratum::Action::"cancel"` / `"resume"` / `"rerun"` on the run's topic); a refusal is kept on the
run (`interventions`, read by the audit trail) and answered 403 with the deciding
policies. An allowed request goes to the planner as `stratum.run.cancel` /
`stratum.run.resume`, in the run's trace, and is answered 202: the planner applies it
(`functions/planner`), and `stratum show` tells how it went. A cancel of a run that has
ended, or is already being stopped or undone, answers 409, as does a resume of a run that
is not Held. A rerun is made here (`stratum.runs.rerun`): a tenant's caller must also be
allowed to trigger the topic itself; the new run, Accepted or Denied by its trigger
decided again as the original sender, and the original's `stratum.run.rerun` are stored
in one transaction, then published (the new run starts a trace of its own); answered 201.
A request may carry the caller's idempotency key (`request`): made again with it, it is
the same request (a rerun answers 200 with the run it made, announced again).
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from stratum.authz import PolicyRegistry
from stratum.authz.model import SteerContext, TriggerContext
from stratum.clock import iso, utc_now
from stratum.events import CancelRun, ResumeRun, RunAccepted, emit
from stratum.runs import rerun as reruns
from stratum.runs.status import FINAL, RunStatus
from stratum.runtime.publisher import Publisher
from stratum.store import RunStore
from stratum.telemetry import metrics, tracing
from stratum.trust.principal import Principal
from stratum_host.api.auth import Caller

log = logging.getLogger("stratum.api.steering")
SOURCE = "stratum/api"
# names an unverified caller (signatures not required): a claim, like a CloudEvents source
CALLER_HEADER = "stratum-caller"
# a run in one of these is already on its way to an end that a cancel would not change
BEING_STOPPED = frozenset({RunStatus.CANCELLING, RunStatus.COMPENSATING})


class SteerRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(default="", max_length=500)
    # the caller's idempotency key: the same key on the same run is the same request, so
    # a client that retries (a timeout, a lost answer) never cancels, resumes or reruns twice
    request: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._-]{1,64}$")


def request_id_of(run_id: str, key: str | None) -> str:
    """The request's id: derived from the caller's key when it gave one, else fresh."""
    if key is None:
        return "req-" + uuid.uuid4().hex
    return "req-" + hashlib.sha256(f"{run_id}\n{key}".encode()).hexdigest()[:32]


Steer = Literal["cancel", "resume"]
Action = Literal["cancel", "resume", "rerun"]
# the command each request becomes, for the planner
COMMANDS: dict[Steer, type[CancelRun] | type[ResumeRun]] = {
    "cancel": CancelRun,
    "resume": ResumeRun,
}


def principal_of(caller: Caller | None, run_tenant: str, claimed: str | None) -> Principal:
    """Who is asking, as Cedar sees it."""
    if caller is None:
        return Principal(kind="source", name=claimed or "anonymous", tenant=run_tenant)
    if caller.tenant is None:
        return Principal(kind="operator", name=caller.name, tenant="")
    return Principal(kind="publisher", name=caller.name, tenant=caller.tenant)


def _error(code: int, message: str, **more: Any) -> JSONResponse:
    return JSONResponse({"error": message, **more}, status_code=code)


def refusal(action: str, run_id: str, status: RunStatus) -> str | None:
    """Why `action` cannot apply to a run in `status` (409), or None. Any run may be
    rerun (its trigger is decided again)."""
    if action == "rerun":
        return None
    if action == "resume":
        return None if status is RunStatus.HELD else f"run {run_id} is not held: it is {status}"
    if status in FINAL:
        return f"run {run_id} has already ended: {status}"
    if status in BEING_STOPPED:
        doing = "being cancelled" if status is RunStatus.CANCELLING else "being undone"
        return f"run {run_id} is already {doing}"
    return None


@dataclass(frozen=True)
class Allowed:
    """A request the policies allowed: the run as stored, who asked, what was decided."""

    run: dict[str, Any]
    status: RunStatus
    principal: Principal
    reason: str
    policy_ids: list[str]
    request_id: str
    now: datetime


def rerun_answer(
    rerun: Mapping[str, Any], original: Mapping[str, Any], asked: Allowed, *, status_code: int
) -> JSONResponse:
    """What a rerun request answers: the new run and how its trigger was decided (the same
    for the request made again with its key)."""
    allowed = rerun.get("decision") == "allow"
    return JSONResponse(
        {
            "run_id": rerun.get("_id") or rerun.get("id"),
            "rerun_of": original["_id"],
            "status": "Accepted" if allowed else "Denied",
            "reason": "" if allowed else str(rerun.get("reason") or ""),
            "actor": asked.principal.actor,
            "policy_ids": asked.policy_ids,
            "trigger_policy_ids": list(rerun.get("policy_ids") or []),
        },
        status_code=status_code,
    )


def steering_routes(
    store: RunStore,
    policies: PolicyRegistry,
    publisher: Publisher,
    *,
    signatures_required: bool,
) -> list[Route]:
    async def authorize(request: Request, action: Action) -> Allowed | JSONResponse:
        """The run, and Cedar's yes; or the answer that refuses the request (kept on the
        run when the policies refuse it)."""
        run_id = request.path_params["run_id"]
        try:
            body = await request.body()
            asked = SteerRequest.model_validate(orjson.loads(body) if body.strip() else {})
        except (orjson.JSONDecodeError, ValidationError) as error:
            return _error(400, f'a {action} request is JSON {{"reason": "..."}}: {error}')
        run = await store.get_run(run_id)
        tenant = request.query_params.get("tenant") or None  # a publisher's: set by auth
        if run is None or (tenant is not None and run.get("tenant") != tenant):
            return _error(404, f"unknown run {run_id}")
        status = RunStatus(str(run.get("status")))
        refused = refusal(action, run_id, status)
        if refused is not None:
            return _error(409, refused, status=status.value)

        caller: Caller | None = getattr(request.state, "caller", None)
        principal = principal_of(caller, str(run["tenant"]), request.headers.get(CALLER_HEADER))
        now = utc_now()
        context = SteerContext(
            run_id=run_id,
            run_actor=str(run.get("actor") or ""),
            run_status=status.value,
            reason=asked.reason,
            time=now,
        )
        decision = policies.decide_steer(
            principal, action, str(run["tenant"]), str(run.get("topic") or ""), context
        )
        request_id = request_id_of(run_id, asked.request)
        allowed = Allowed(
            run, status, principal, asked.reason, decision.policy_ids, request_id, now
        )
        if not decision.allowed:
            return await refuse(allowed, action, decision.reason, decision.policy_ids)
        return allowed

    async def refuse(
        asked: Allowed, action: Action, why: str, policy_ids: list[str]
    ) -> JSONResponse:
        """Keep a refused request on the run (its audit), count it, and answer 403."""
        run_id, actor = str(asked.run["_id"]), asked.principal.actor
        await store.record_intervention(
            run_id,
            {
                "request": asked.request_id,
                "action": action,
                "actor": actor,
                "reason": asked.reason,
                "decision": "deny",
                "policy_ids": policy_ids,
                "why": why,
                "at": iso(asked.now),
                "outcome": "refused",
            },
        )
        metrics.INTERVENTIONS.labels(asked.run["tenant"], action, "refused").inc()
        log.warning(
            f"{action} refused by the policies",
            extra={"run_id": run_id, "actor": actor, "reason": why},
        )
        return _error(403, f"{actor} may not {action} run {run_id}: {why}", policy_ids=policy_ids)

    async def steer(request: Request, action: Steer) -> JSONResponse:
        allowed = await authorize(request, action)
        if isinstance(allowed, JSONResponse):
            return allowed
        run = allowed.run
        command = emit(
            COMMANDS[action](
                actor=allowed.principal.actor, reason=allowed.reason, policy_ids=allowed.policy_ids
            ),
            cause=allowed.request_id,
            run_id=run["_id"],
            tenant=str(run["tenant"]),
            source=SOURCE,
            now=allowed.now,
            resumption=int(run.get("resumptions") or 0),
        )
        found = await store.last_event_of(run["_id"], [RunAccepted.TYPE])
        with tracing.resumed(found[1] if found else {}):
            await publisher.publish(command)
        return JSONResponse(
            {
                "run_id": run["_id"],
                "request": command.id,
                "actor": allowed.principal.actor,
                "was": allowed.status.value,
                # the run's resumptions so far (a resume starts the next)
                "resumption": int(run.get("resumptions") or 0),
                "policy_ids": allowed.policy_ids,
            },
            status_code=202,
        )

    async def cancel(request: Request) -> JSONResponse:
        return await steer(request, "cancel")

    async def resume(request: Request) -> JSONResponse:
        return await steer(request, "resume")

    async def rerun(request: Request) -> JSONResponse:
        """A new run of the run's trigger event, its trigger decided again (by today's
        policies, as the principal that sent it), linked both ways."""
        allowed = await authorize(request, "rerun")
        if isinstance(allowed, JSONResponse):
            return allowed
        run, now = allowed.run, allowed.now
        trigger = TriggerContext(
            subject=str(run.get("trigger_subject") or ""),
            time=now,
            event_id=str(run.get("event_id") or ""),
            event_type=str(run.get("event_type") or ""),
            event_source=str(run.get("event_source") or ""),
        )
        tenant, topic = str(run["tenant"]), str(run.get("topic") or "")
        if allowed.principal.kind != "operator":
            # a tenant's principal reruns only what it may trigger itself: a rerun is
            # never a way to start, as another, a pipeline one may not start
            own = policies.decide(allowed.principal, tenant, topic, trigger)
            if not own.allowed:
                why = f"it may not trigger {topic} itself: {own.reason}"
                return await refuse(allowed, "rerun", why, own.policy_ids)
        sender = (
            await store.publisher_by_key(str(run["actor_key"])) if run.get("actor_key") else None
        )
        principal = reruns.original_principal(run, sender, signatures_required)
        if isinstance(principal, str):
            ok, why, trigger_policies = False, principal, []
        else:
            verdict = policies.decide(principal, tenant, topic, trigger)
            ok, why, trigger_policies = verdict.allowed, verdict.reason, verdict.policy_ids
        made = reruns.rerun(
            run,
            allowed.request_id,
            asked_by=allowed.principal.actor,
            reason=allowed.reason,
            rerun_policies=allowed.policy_ids,
            allowed=ok,
            why=why,
            trigger_policies=trigger_policies,
            now=now,
        )
        entry = {
            "request": allowed.request_id,
            "action": "rerun",
            "actor": allowed.principal.actor,
            "reason": allowed.reason,
            "decision": "allow",
            "policy_ids": allowed.policy_ids,
            "at": iso(now),
            "outcome": f"rerun as {made.record['id']} ({made.status.value})",
        }
        made_before = await store.get_run(made.record["id"])
        if made_before is not None:  # this request was made before: announce it again
            for event in await store.events_caused_by(made.record["id"]):
                await publisher.publish(event)
            for event in await store.events_caused_by(allowed.request_id):
                await publisher.publish(event)
            return rerun_answer(made_before, run, allowed, status_code=200)
        await store.rerun_run(
            run["_id"],
            made.record,
            made.status.value,
            entry,
            [made.started, made.noted],
            cause=allowed.request_id,
        )
        metrics.INTERVENTIONS.labels(run["tenant"], "rerun", made.status.value.lower()).inc()
        await publisher.publish(made.started)  # the new run: a trace of its own
        found = await store.last_event_of(run["_id"], [RunAccepted.TYPE])
        with tracing.resumed(found[1] if found else {}):
            await publisher.publish(made.noted)
        return rerun_answer(made.record, run, allowed, status_code=201)

    return [
        Route("/api/runs/{run_id}/cancel", cancel, methods=["POST"]),
        Route("/api/runs/{run_id}/resume", resume, methods=["POST"]),
        Route("/api/runs/{run_id}/rerun", rerun, methods=["POST"]),
    ]
