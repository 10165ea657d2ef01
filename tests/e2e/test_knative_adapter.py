"""The Knative shape, end to end over CloudEvents HTTP: the five functions each served
as its own endpoint (`FunctionHost`, what `stratum function serve` runs), no NATS at all,
and a small broker in the test standing in for Knative's (tests/knative_broker.py)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest_asyncio
import uvicorn
from starlette.applications import Starlette
from starlette.routing import Route

from stratum.clock import iso, utc_now
from stratum.events import RunAccepted
from stratum.ids import run_id
from stratum.runtime.http_adapter import binary_message
from stratum_host.function_host import FunctionHost
from stratum_host.registry import FUNCTION_NAMES
from tests.conftest import Vault, eventually, make_settings
from tests.e2e.test_delivery_errors import planned_with_a_lost_graph
from tests.e2e.test_pipelines import SAMPLE, tree
from tests.e2e.test_watchdog import accepted_but_never_announced
from tests.events import binary_event_headers, publisher_event
from tests.knative_broker import Broker, NoAnnouncer, serve_app

TIMEOUT = httpx.Timeout(90.0)


@dataclass
class Knative:
    host: FunctionHost
    broker: Broker
    ingress: str
    client: httpx.AsyncClient

    async def finished(self, run: str, timeout: float = 60.0) -> dict[str, Any]:
        store = self.host.store

        async def probe() -> dict[str, Any] | None:
            view = await store.get_view(run)
            if not view or not view.get("finished"):
                return None
            complete = await store.count_history(run) >= await store.count_run_events(run)
            return view if complete else None

        result: dict[str, Any] = await eventually(probe, timeout=timeout)
        return result


@pytest_asyncio.fixture(loop_scope="session")
async def knative(tmp_path: Path, openbao: Vault) -> AsyncIterator[Knative]:
    # no NATS in this shape: the URL is never dialled
    settings = make_settings(
        tmp_path, "nats://127.0.0.1:9", vault_addr=openbao.addr, vault_token=openbao.token
    )
    host = await FunctionHost.open(settings, FUNCTION_NAMES)
    client = httpx.AsyncClient(timeout=TIMEOUT)
    broker = Broker(host.subjects, host.functions(NoAnnouncer(host.subjects)), client)
    served: list[tuple[uvicorn.Server, asyncio.Task[None]]] = []
    try:
        routes = [Route("/", broker.ingress, methods=["POST"])]
        server, task, ingress = await serve_app(Starlette(routes=routes))
        served.append((server, task))
        for name in FUNCTION_NAMES:
            endpoint = host.endpoint(name, sink=ingress)  # K_SINK: the broker
            server, task, url = await serve_app(endpoint.app)
            served.append((server, task))
            broker.endpoints[name] = url
        yield Knative(host, broker, ingress, client)
    finally:
        await broker.close()
        await stop_apps(served)
        await client.aclose()
        await host.stop()


async def stop_apps(served: list[tuple[uvicorn.Server, asyncio.Task[None]]]) -> None:
    """Stop the endpoints `serve_app` started, all at once, then wait for each."""
    for server, _ in served:
        server.should_exit = True
    for _, task in served:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 10)


def _structured(topic: str, data: dict[str, Any], ident: str) -> dict[str, Any]:
    return publisher_event(topic, data, ident=ident, tenant="acme")


async def test_binary_and_structured_events_drive_full_pipelines_over_http(
    knative: Knative, tmp_path: Path
) -> None:
    # binary mode: attributes in ce-* headers, the data as the body, a publisher's trace
    trace_id = uuid.uuid4().hex
    crate_id = str(uuid.uuid4())
    response = await knative.client.post(
        knative.ingress,
        content=orjson.dumps({"source": SAMPLE}),
        headers=binary_event_headers("crate.push", crate_id, tenant="acme")
        | {"traceparent": f"00-{trace_id}-{'1' * 16}-01"},
    )
    assert response.status_code == 202
    # structured mode: the whole event as the body
    target = tmp_path / "release-target"
    before = tree(target)
    release_id = str(uuid.uuid4())
    data = {"version": "9.9.9", "target": str(target), "fail_at": "publish"}
    response = await knative.client.post(
        knative.ingress,
        content=orjson.dumps(_structured("release.request", data, release_id)),
        headers={"content-type": "application/cloudevents+json"},
    )
    assert response.status_code == 202

    crate = await knative.finished(run_id("acme", crate_id))
    assert crate["status"] == "Succeeded", crate.get("error")
    assert [stage["nodes"] for stage in crate["stages"]] == [
        ["fmt-crate", "lint-crate"],
        ["build-crate"],
    ]
    assert all(node["status"] == "succeeded" for node in crate["nodes"].values())
    assert crate["trace_id"] == trace_id  # the publisher's trace, carried in HTTP headers
    artifact = (await knative.host.store.capabilities(crate["run_id"]))["built-artifact"]
    assert Path(artifact["path"]).is_file()

    release = await knative.finished(run_id("acme", release_id))
    assert release["status"] == "Compensated"
    assert release["nodes"]["publish-release"]["status"] == "failed"
    steps = [(step["stage"], step["node"]) for step in release["compensation"]]
    assert steps == sorted(steps, reverse=True), "compensation must run latest stage first"
    assert {node for _, node in steps} == {"prepare-release", "tag-release", "upload-assets"}
    assert all(step["status"] == "succeeded" for step in release["compensation"])
    assert tree(target) == before, "every effect of the run must be undone"

    # every function was reached over HTTP, and nothing needed the broker's retries
    reached = {name for name, _, _ in knative.broker.delivered}
    assert reached == set(FUNCTION_NAMES)
    assert all(status in (200, 202) for _, _, status in knative.broker.delivered)


async def test_a_malformed_event_is_answered_400_naming_what_is_wrong(knative: Knative) -> None:
    ingest = knative.broker.endpoints["ingest"]
    no_id = {
        "ce-specversion": "1.0",
        "ce-source": "tests",
        "ce-type": "crate.push",
        "ce-tenant": "acme",
        "content-type": "application/json",
    }
    response = await knative.client.post(ingest, content=b"{}", headers=no_id)
    assert response.status_code == 400
    assert "missing required attribute(s) id" in response.json()["error"]
    assert (await knative.host.store.rejections())[0]["reason"].endswith("id")

    no_tenant = {k: v for k, v in no_id.items() if k != "ce-tenant"} | {"ce-id": "x"}
    response = await knative.client.post(ingest, content=b"{}", headers=no_tenant)
    assert response.status_code == 400
    assert "no tenant" in response.json()["error"]

    response = await knative.client.post(ingest, content=b"not json")
    assert response.status_code == 400
    assert "body is not JSON" in response.json()["error"]

    # an internal event whose payload does not match its type
    planner = knative.broker.endpoints["planner"]
    bad = {
        "ce-specversion": "1.0",
        "ce-id": "evt-1",
        "ce-source": "tests",
        "ce-type": "stratum.run.accepted",
        "ce-time": iso(utc_now()),
        "ce-subject": "run-x",
        "ce-tenant": "acme",
        "ce-runid": "run-x",
        "content-type": "application/json",
    }
    response = await knative.client.post(planner, content=b'{"nodes": []}', headers=bad)
    assert response.status_code == 400
    assert "topic" in response.json()["error"]
    # a type the function does not take (a Trigger pointing at the wrong function)
    wrong = bad | {"ce-type": "stratum.node.started"}
    response = await knative.client.post(planner, content=b"{}", headers=wrong)
    assert response.status_code == 400
    assert "planner does not consume events of type stratum.node.started" in response.text


async def test_health_endpoints_answer_as_knative_probes_expect(knative: Knative) -> None:
    for name, url in knative.broker.endpoints.items():
        live = await knative.client.get(url + "healthz")
        ready = await knative.client.get(url + "readyz")
        assert live.status_code == 200 and live.json()["function"] == name
        assert ready.status_code == 200 and ready.json()["ready"] is True


async def test_an_endpoint_without_valid_definitions_is_live_degraded_and_not_ready(
    tmp_path: Path,
) -> None:
    """Served from a definitions folder that does not load, the functions that read the
    graph answer /healthz (liveness) as degraded with the located error, as `stratum up`
    would, and are not ready; the projector, which reads no graph, is fine."""
    folder = tmp_path / "defs"
    folder.mkdir()
    (folder / "bad.ncl").write_text("{ nodes = [ }\n")
    settings = make_settings(tmp_path, "nats://127.0.0.1:9", definitions=str(folder))
    host = await FunctionHost.open(settings, ["planner", "projector"])
    served: list[tuple[uvicorn.Server, asyncio.Task[None]]] = []
    try:
        urls = {}
        for name in ("planner", "projector"):
            server, task, url = await serve_app(host.endpoint(name, sink="").app)
            served.append((server, task))
            urls[name] = url
        async with httpx.AsyncClient(timeout=10) as client:
            live = await client.get(urls["planner"] + "healthz")
            ready = await client.get(urls["planner"] + "readyz")
            assert live.status_code == 200
            body = live.json()
            assert (body["status"], body["function"]) == ("degraded", "planner")
            definitions = body["definitions"]
            assert definitions["degraded"] is True and definitions["version"] is None
            assert definitions["error"].startswith(f"{folder / 'bad.ncl'}:1:")
            assert definitions["since"] and definitions["loaded_at"] is None
            assert ready.status_code == 503
            assert ready.json()["reason"].startswith("no valid definitions: ")

            live = await client.get(urls["projector"] + "healthz")
            ready = await client.get(urls["projector"] + "readyz")
            assert live.json() == {"status": "ok", "function": "projector"}
            assert ready.status_code == 200
    finally:
        await stop_apps(served)
        await host.stop()


async def failed_view(knative: Knative, run: str) -> dict[str, Any]:
    """The run's view once it shows the run ended Failed."""

    async def probe() -> dict[str, Any] | None:
        view = await knative.host.store.get_view(run)
        return view if view and view.get("finished") and view["status"] == "Failed" else None

    result: dict[str, Any] = await eventually(probe)
    return result


async def test_a_permanent_error_is_accepted_as_a_dead_letter_and_ends_its_run(
    knative: Knative,
) -> None:
    """202 (the broker must not retry it), the dead letter recorded, the run Failed with
    the reason: its end POSTed to the sink, which routes it to the projector."""
    store = knative.host.store
    run, command = await planned_with_a_lost_graph(store, knative.host.subjects)
    headers, body = binary_message(command)
    response = await knative.client.post(
        knative.broker.endpoints["stage-executor"], content=body, headers=headers
    )
    assert response.status_code == 202, response.text
    answer = response.json()
    assert answer["kind"] == "DefinitionError" and answer["dead_letter"]
    letter = await store.get_dead_letter(answer["dead_letter"])
    assert letter is not None and letter.permanent and letter.deliveries == 1
    assert letter.function == "stage-executor" and not letter.invalid

    view = await failed_view(knative, run)
    assert letter.id in view["error"] and view["error"].endswith(letter.error)
    record = await store.get_run(run)
    assert record is not None and (record["status"], record["error"]) == ("Failed", view["error"])
    assert "stratum.run.failed" in [r.type for r in knative.broker.routed if r.runid == run]


async def test_a_retryable_error_answers_503_and_the_retry_goes_on(
    knative: Knative, tmp_path: Path
) -> None:
    """A planner with nowhere to send what it emitted (no K_SINK yet) answers 503 with
    Retry-After; delivered again once it has one, the run goes on to the end."""
    store = knative.host.store
    run = await accepted_but_never_announced(store, knative.host.subjects)
    found = await store.last_event_of(run, [RunAccepted.TYPE])
    assert found is not None
    headers, body = binary_message(found[0])
    served = [await serve_app(knative.host.endpoint("planner", sink="").app)]
    try:
        _, _, unbound = served[0]
        response = await knative.client.post(unbound, content=body, headers=headers)
    finally:
        await stop_apps([(server, task) for server, task, _ in served])
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"] == "1"
    assert response.json()["kind"] == "RetryableError" and "K_SINK" in response.json()["error"]
    assert not await store.dead_letters()

    response = await knative.client.post(knative.ingress, content=body, headers=headers)
    assert response.status_code == 202
    view = await knative.finished(run)
    assert view["status"] == "Succeeded", view.get("error")
