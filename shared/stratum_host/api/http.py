"""The HTTP API `stratum up` serves, read by the CLI.

GET /metrics (Prometheus text: the metrics of every function in this process)
POST /events/{tenant} (a CloudEvent over HTTP onto the tenant's event subject: ingress.py)
GET /healthz (liveness: always 200; `status` "degraded" while a reload error is pending),
GET /readyz (200 while a graph and policies are in force, degraded or not; else 503)
GET /api/runs[?tenant=&status=&limit=], /api/runs/{id}[?tenant=], /api/graph, /api/plan?topic=
(a run's detail: its view, its `history`, each node's `outputs`: stratum_host.api.outputs,
and the operators' requests of it, `interventions`)
GET /api/audit[?tenant=&since=] (the audit trail, hash-chained NDJSON: stratum_host.api.audit)
POST /api/replay (rebuild the read models from the stored events)
POST /api/runs/{id}/cancel, /resume, /rerun (an operator steers a run, decided by Cedar:
stratum_host.api.steering)
GET /api/dead-letters[?limit=], /api/dead-letters/{id} (with its body)
POST /api/dead-letters/{id}/redrive (publish it again on its original subject)
GET/POST /api/publishers, DELETE /api/publishers/{name} (see stratum_host.api.publishers)
Errors are JSON `{"error": "..."}` with a fitting status code.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from stratum.authz import PolicyRegistry
from stratum.errors import PlanError
from stratum.graph import plan
from stratum.graph.registry import GraphRegistry
from stratum.runs.status import RunStatus
from stratum.runtime.jetstream import redrive
from stratum.store import RunStore
from stratum.telemetry import metrics
from stratum.telemetry.health import LoadState, health_body, unready
from stratum_host.api.audit import audit_routes
from stratum_host.api.outputs import Produced, node_outputs
from stratum_host.api.publishers import publisher_routes

log = logging.getLogger("stratum.api")
# `--status cancelled`, `compensation-failed`, `CompensationFailed`: each status by its name
STATUS_NAMES = {status.value.lower(): status.value for status in RunStatus}


async def _nothing() -> None:
    return None


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


class Replayer(Protocol):
    async def rebuild(self) -> int: ...


def create_app(
    store: RunStore,
    graphs: GraphRegistry,
    projections: Replayer,
    jetstream: Any = None,
    on_publishers_changed: Callable[[], Awaitable[None]] | None = None,
    policies: PolicyRegistry | None = None,
    before_metrics: Callable[[], Awaitable[None]] | None = None,
    extra_routes: Sequence[BaseRoute] = (),
) -> Starlette:
    """The API over `store`; re-driving dead letters also needs `jetstream` to publish;
    `on_publishers_changed` applies publisher changes to NATS; `before_metrics` updates
    the gauges read at scrape time (queue depths); `extra_routes` are served beside (the
    HTTP event ingress, `stratum_host.api.ingress`)."""

    async def metrics_text(_: Request) -> Response:
        if before_metrics is not None:
            try:
                await before_metrics()
            except Exception as error:  # the rest of the metrics are still worth serving
                log.warning(f"could not read queue depths for /metrics: {error}")
        return Response(generate_latest(metrics.REGISTRY), media_type=CONTENT_TYPE_LATEST)

    def loaded() -> dict[str, LoadState]:
        parts = {"definitions": graphs.health()}
        return parts | ({"policies": policies.health()} if policies is not None else {})

    async def healthz(_: Request) -> JSONResponse:
        parts = loaded()
        definitions, rules = parts["definitions"], parts.get("policies")
        # the flat fields predate `definitions`/`policies` and are kept for their readers
        flat = {
            "graph_version": definitions.version,
            "graph_error": definitions.error,
            "policies_version": rules.version if rules else None,
            "policies_error": rules.error if rules else None,
        }
        return JSONResponse(health_body(parts, **flat))

    async def readyz(_: Request) -> JSONResponse:
        missing = unready(loaded())
        if missing:
            return JSONResponse({"ready": False, "reason": missing}, status_code=503)
        return JSONResponse({"ready": True})

    async def runs(request: Request) -> JSONResponse:
        tenant = request.query_params.get("tenant") or None
        try:
            limit = max(1, min(int(request.query_params.get("limit", "50")), 1000))
        except ValueError:
            return _error(400, "limit must be a whole number")
        status = request.query_params.get("status") or None
        if status is not None:
            status = STATUS_NAMES.get(status.lower().replace("_", "").replace("-", ""))
            if status is None:
                known = ", ".join(sorted(s.value for s in RunStatus))
                return _error(400, f"unknown status {request.query_params['status']}: {known}")
        views = await store.list_views(tenant=tenant, status=status, limit=limit)
        return JSONResponse({"runs": views})

    async def run_detail(request: Request) -> JSONResponse:
        run_id = request.path_params["run_id"]
        # with a tenant, another tenant's run is filtered out by the queries: not found
        tenant = request.query_params.get("tenant") or None
        view = await store.get_view(run_id, tenant)
        if view is None:
            if tenant:
                exists = await store.run_in_tenant(run_id, tenant)
            else:
                exists = await store.get_run(run_id) is not None
            if exists:
                return _error(404, f"run {run_id} exists but is not projected yet")
            return _error(404, f"unknown run {run_id}")
        view.pop("_id", None)
        view.pop("version", None)  # the write counter, not part of what the run shows
        view["history"] = await store.history(run_id, tenant)
        run = await store.get_run(run_id)
        view["interventions"] = (run or {}).get("interventions") or []
        # what each node produced, from the capability table (events carry only hashes)
        produced = [Produced.model_validate(row) for row in await store.produced(run_id)]
        view["outputs"] = node_outputs(produced)
        # the projector may still be folding this run's last events
        view["projected"] = len(view["history"]) >= await store.count_run_events(run_id)
        return JSONResponse(view)

    async def graph(_: Request) -> JSONResponse:
        current = graphs.current
        body: dict[str, Any] = {
            "error": graphs.error,
            "version": None,
            "nodes": {},
            "capabilities": {},
        }
        if current is not None:
            dumped = current.model_dump(mode="json")
            body |= {
                "version": current.version,
                "nodes": dumped["nodes"],
                "capabilities": dumped["schemas"],
            }
        return JSONResponse(body)

    async def plan_for(request: Request) -> JSONResponse:
        topic = request.query_params.get("topic", "")
        if not topic:
            return _error(400, "topic is required: /api/plan?topic=crate.push")
        current = graphs.current
        if current is None:
            return _error(503, f"no valid graph is loaded: {graphs.error}")
        try:
            chosen = plan(current, topic)
        except PlanError as error:
            return _error(404, str(error))
        return JSONResponse(
            {
                "topic": topic,
                "graph_version": chosen.graph_version,
                "stages": [list(stage) for stage in chosen.stages],
            }
        )

    async def replay(_: Request) -> JSONResponse:
        return JSONResponse({"runs": await projections.rebuild()})

    async def dead_letters(request: Request) -> JSONResponse:
        try:
            limit = max(1, min(int(request.query_params.get("limit", "50")), 1000))
        except ValueError:
            return _error(400, "limit must be a whole number")
        letters = await store.dead_letters(limit)
        return JSONResponse(
            {"dead_letters": [letter.model_dump(mode="json") for letter in letters]}
        )

    async def dead_letter(request: Request) -> JSONResponse:
        letter_id = request.path_params["letter_id"]
        letter = await store.get_dead_letter(letter_id)
        if letter is None:
            return _error(404, f"unknown dead letter {letter_id}")
        return JSONResponse(letter.model_dump(mode="json"))

    async def redrive_letter(request: Request) -> JSONResponse:
        letter_id = request.path_params["letter_id"]
        letter = await store.get_dead_letter(letter_id)
        if letter is None:
            return _error(404, f"unknown dead letter {letter_id}")
        if not letter.redrivable:
            return _error(
                409,
                f"dead letter {letter_id} kept only part of its {letter.body_bytes}-byte body; "
                "it cannot be re-driven",
            )
        if jetstream is None:
            return _error(503, "this API was started without a NATS connection to re-drive with")
        try:
            done = await redrive(jetstream, store, letter)
        except Exception as error:  # NATS trouble: the caller may simply try again
            return _error(503, f"re-driving {letter_id} to {letter.subject} failed: {error}")
        return JSONResponse(done.model_dump(mode="json", exclude={"body"}))

    return Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics_text),
            Route("/api/runs", runs),
            Route("/api/runs/{run_id}", run_detail),
            Route("/api/graph", graph),
            Route("/api/plan", plan_for),
            Route("/api/replay", replay, methods=["POST"]),
            Route("/api/dead-letters", dead_letters),
            Route("/api/dead-letters/{letter_id}", dead_letter),
            Route("/api/dead-letters/{letter_id}/redrive", redrive_letter, methods=["POST"]),
            *audit_routes(store),
            *publisher_routes(store, on_publishers_changed or _nothing),
            *extra_routes,
        ]
    )
