"""The deployed shape, tested the same way in both modes (tests/containers/launch.py):
Stratum's functions in the functions image (or a local `stratum` process) on a
deployment's own NATS (NKey users) and OpenBao. A pipeline end to end; a hard restart of
the functions' container mid-run, after which the run resumes from the stored state and
succeeds; the Knative adapters of all five functions chained by CloudEvents over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from pathlib import Path
from typing import Any

import httpx
import nats
import orjson
import pytest
from starlette.applications import Starlette
from starlette.routing import Route

from stratum.bus.local_server import free_port
from stratum.bus.nkeys import CORE_IDENTITY
from stratum.bus.subjects import Subjects
from stratum.ids import run_id
from stratum_host.registry import FUNCTION_NAMES, placed
from tests.conftest import eventually, make_settings
from tests.containers.conftest import Nats, StartStratum, Stratum
from tests.e2e.test_pipelines import SAMPLE
from tests.e2e.test_tenancy import NAP, NAP_SCRIPT
from tests.events import binary_event_headers, publisher_event
from tests.knative_broker import Broker, serve_app

pytestmark = pytest.mark.asyncio(loop_scope="session")
ARTIFACT = "workspace/artifacts/tally-0.3.1.tar.gz"


def cloud_event(topic: str, data: dict[str, Any]) -> tuple[str, bytes]:
    """A publisher's CloudEvent (structured, unsigned): its id and JSON body."""
    body = publisher_event(topic, data, source="tests/containers")
    ident = body["id"]
    return ident, orjson.dumps(body)


async def emit(deployment: Nats, topic: str, data: dict[str, Any]) -> str:
    """Publish on the deployment's NATS as its core NKey user; the run id it starts."""
    ident, body = cloud_event(topic, data)
    nc = await nats.connect(deployment.url, nkeys_seed_str=deployment.seed(CORE_IDENTITY))
    try:
        await nc.jetstream().publish(Subjects(deployment.prefix).event("acme", topic), body)
    finally:
        await nc.close()
    return run_id("acme", ident)


async def view(client: httpx.AsyncClient, stratum: Stratum, run: str) -> dict[str, Any] | None:
    response = await client.get(f"{stratum.http}/api/runs/{run}")
    if response.status_code == 404:
        return None
    response.raise_for_status()
    result: dict[str, Any] = response.json()
    return result


async def finished(stratum: Stratum, run: str, timeout: float = 90.0) -> dict[str, Any]:
    """The run as `GET /api/runs/{id}` shows it once finished."""
    async with httpx.AsyncClient(timeout=10) as client:

        async def probe() -> dict[str, Any] | None:
            with contextlib.suppress(httpx.TransportError):  # restarting
                current = await view(client, stratum, run)
                if current and current.get("finished"):
                    return current
            return None

        result: dict[str, Any] = await eventually(probe, timeout=timeout, interval=0.2)
        return result


async def test_a_pipeline_runs_with_the_functions_in_the_container(
    nats: Nats, stratum: Stratum
) -> None:
    run = await emit(nats, "crate.push", {"source": SAMPLE})
    result = await finished(stratum, run)
    assert result["status"] == "Succeeded", (result.get("error"), stratum.logs()[-2000:])
    assert [stage["nodes"] for stage in result["stages"]] == [
        ["fmt-crate", "lint-crate"],
        ["build-crate"],
    ]
    # built in there, onto the data dir this machine lent it
    assert (stratum.data_dir / "runs" / run / ARTIFACT).is_file()


async def test_a_run_resumes_after_a_hard_restart_of_its_container(
    nats: Nats, start_stratum: StartStratum, tmp_path: Path
) -> None:
    definitions = tmp_path / "definitions"
    definitions.mkdir()
    (definitions / "nap.ncl").write_text(NAP)
    (definitions / "nap.nu").write_text(NAP_SCRIPT)
    stratum = start_stratum(definitions=definitions)
    run = await emit(nats, "nap.start", {"ms": 3000})

    async with httpx.AsyncClient(timeout=10) as client:

        async def napping() -> bool:
            current = await view(client, stratum, run)
            nodes = current["nodes"] if current else {}
            return bool(nodes.get("nap", {}).get("status") == "running")

        await eventually(napping, timeout=60, interval=0.1)
    await asyncio.to_thread(stratum.restart)  # killed mid-node, then started again

    result = await finished(stratum, run)
    assert result["status"] == "Succeeded", (result.get("error"), stratum.logs()[-3000:])
    assert result["nodes"]["nap"]["status"] == "succeeded"
    assert stratum.logs().count("Stratum is up") == 2
    async with httpx.AsyncClient(timeout=10) as client:
        listed = (await client.get(f"{stratum.http}/api/runs")).json()["runs"]
    assert [item["run_id"] for item in listed] == [run]  # the same run, not a new one


async def test_the_knative_adapters_in_the_container_chain_a_pipeline_over_http(
    nats: Nats, start_stratum: StartStratum, tmp_path: Path
) -> None:
    subjects = Subjects(nats.prefix)
    settings = make_settings(tmp_path, "", subject_prefix=nats.prefix)
    functions = placed(settings, subjects)  # what the Triggers filter on
    async with httpx.AsyncClient(timeout=httpx.Timeout(90.0)) as client:
        broker = Broker(subjects, functions, client)
        server, task, ingress = await serve_app(
            Starlette(routes=[Route("/", broker.ingress, methods=["POST"])])
        )
        try:
            port = free_port("127.0.0.1")
            served = start_stratum(
                ("function", "serve", "all", "--port", str(port), "--sink", ingress),
                ready="serving ingest, planner",
                port=port,
            )
            for name in FUNCTION_NAMES:
                broker.endpoints[name] = f"{served.http}/{name}/"

            async def ready() -> bool:
                with contextlib.suppress(httpx.TransportError):
                    answers = [
                        await client.get(f"{served.http}/{name}/readyz") for name in FUNCTION_NAMES
                    ]
                    return all(answer.status_code == 200 for answer in answers)
                return False

            await eventually(ready, timeout=30, interval=0.1)
            ident = str(uuid.uuid4())
            response = await client.post(
                ingress,
                content=orjson.dumps({"source": SAMPLE}),
                headers=binary_event_headers(
                    "crate.push", ident, source="tests/containers", tenant="acme"
                ),
            )
            assert response.status_code == 202
            run = run_id("acme", ident)

            async def projected() -> bool:
                # the run's last event, delivered to (and taken by) the projector
                done = any(
                    event.type == "stratum.run.succeeded" and event.runid == run
                    for event in broker.routed
                )
                return done and any(
                    name == "projector" and kind == "stratum.run.succeeded" and status in (200, 202)
                    for name, kind, status in broker.delivered
                )

            await eventually(projected, timeout=90, interval=0.2)
            assert not any(e.type == "stratum.run.failed" for e in broker.routed)
            # all but the compensator (ready above), which only a failed run reaches
            reached = {name for name, _, _ in broker.delivered}
            assert reached == set(FUNCTION_NAMES) - {"compensator"}
            assert all(status in (200, 202) for _, _, status in broker.delivered)
            assert (served.data_dir / "runs" / run / ARTIFACT).is_file()
        finally:
            await broker.close()
            server.should_exit = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 10)
