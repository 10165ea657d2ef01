"""`POST /api/runs/{id}/cancel` and `/resume`: an operator's request to stop a run, or to
run a held one again from the stage it failed in, decided by Cedar.

Who asks is the caller the signed-request middleware verified (`stratum_host.api.auth`):
the operator (`Stratum::Operator`), or a registered publisher, who sees only its own
tenant's runs. Without signatures (local development) the caller is an unverified
`Stratum::Source` named by the `Stratum-Caller` header. Cedar decides
(`Stratum::Action::"cancel"` / `"resume"` on the run's topic); a refusal is kept on the
run (`interventions`, read by the audit trail) and answered 403 with the deciding
policies. An allowed request goes to the planner as `stratum.run.cancel` /
`stratum.run.resume`, in the run's trace, and is answered 202: the planner applies it
(`functions/planner`), and `stratum show` tells how it went. A cancel of a run that has
ended, or is already being stopped or undone, answers 409, as does a resume of a run that
is not Held.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from stratum.authz import PolicyRegistry
from stratum.authz.model import SteerContext
from stratum.clock import iso, utc_now
from stratum.events import CancelRun, ResumeRun, RunAccepted, emit
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


Steer = Literal["cancel", "resume"]
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
    """Why `action` cannot apply to a run in `status` (409), or None."""
    if action == "resume":
        return None if status is RunStatus.HELD else f"run {run_id} is not held: it is {status}"
    if status in FINAL:
        return f"run {run_id} has already ended: {status}"
    if status in BEING_STOPPED:
        doing = "being cancelled" if status is RunStatus.CANCELLING else "being undone"
        return f"run {run_id} is already {doing}"
    return None


def steering_routes(store: RunStore, policies: PolicyRegistry, publisher: Publisher) -> list[Route]:
    async def steer(request: Request, action: Steer) -> JSONResponse:
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
        request_id = "req-" + uuid.uuid4().hex
        if not decision.allowed:
            await store.record_intervention(
                run_id,
                {
                    "request": request_id,
                    "action": action,
                    "actor": principal.actor,
                    "reason": asked.reason,
                    "decision": "deny",
                    "policy_ids": decision.policy_ids,
                    "why": decision.reason,
                    "at": iso(now),
                    "outcome": "refused",
                },
            )
            metrics.INTERVENTIONS.labels(run["tenant"], action, "refused").inc()
            log.warning(
                f"{action} refused by the policies",
                extra={"run_id": run_id, "actor": principal.actor, "reason": decision.reason},
            )
            return _error(
                403,
                f"{principal.actor} may not {action} run {run_id}: {decision.reason}",
                policy_ids=decision.policy_ids,
            )

        command = emit(
            COMMANDS[action](
                actor=principal.actor, reason=asked.reason, policy_ids=decision.policy_ids
            ),
            cause=request_id,
            run_id=run_id,
            tenant=str(run["tenant"]),
            source=SOURCE,
            now=now,
            resumption=int(run.get("resumptions") or 0),
        )
        found = await store.last_event_of(run_id, [RunAccepted.TYPE])
        with tracing.resumed(found[1] if found else {}):
            await publisher.publish(command)
        return JSONResponse(
            {
                "run_id": run_id,
                "request": command.id,
                "actor": principal.actor,
                "was": status.value,
                # the run's resumptions so far (a resume starts the next)
                "resumption": int(run.get("resumptions") or 0),
                "policy_ids": decision.policy_ids,
            },
            status_code=202,
        )

    async def cancel(request: Request) -> JSONResponse:
        return await steer(request, "cancel")

    async def resume(request: Request) -> JSONResponse:
        return await steer(request, "resume")

    return [
        Route("/api/runs/{run_id}/cancel", cancel, methods=["POST"]),
        Route("/api/runs/{run_id}/resume", resume, methods=["POST"]),
    ]
