"""Any publisher: `stratum emit`, a plain nats-py client (binary and structured mode) and an
HTTP POST of a CloudEvent to `/events/<tenant>` all start the same run. Everything as
`make up` runs it: Stratum's own nats-server with NKey users, signatures required, the
dev publisher of tenant acme; the nats-py client and the HTTP client sign as any
publisher would (stratum.trust.signing is ed25519 over subject, time and body; docs/auth.md)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import nats
import orjson
import pytest
import pytest_asyncio

from stratum.ids import run_id
from stratum.trust.dev_publishers import seed_path
from stratum.trust.signing import sign_event
from tests.conftest import ROOT, Vault, make_settings
from tests.e2e.conftest import Harness, running
from tests.events import binary_event_headers, publisher_event

pytestmark = pytest.mark.asyncio(loop_scope="session")

STRATUM = str(Path(sys.executable).parent / "stratum")
TOPIC = "crate.push"
DATA = {"source": "nickel/examples/sample-crate"}


@pytest_asyncio.fixture(loop_scope="session")
async def signed(tmp_path: Path, openbao: Vault) -> AsyncIterator[Harness]:
    settings = make_settings(
        tmp_path,
        "",  # its own nats-server: publishers connect as their NKey users
        nats_auth=True,
        require_signatures=True,
        dev_publishers=["acme"],
        vault_addr=openbao.addr,
        vault_token=openbao.token,
    )
    async with running(settings) as harness:
        yield harness


def seed_of(harness: Harness) -> str:
    return seed_path(harness.server.settings.data_dir, "acme").read_text().strip()


def event_body(ident: str) -> dict[str, Any]:
    return publisher_event(TOPIC, DATA, ident=ident, source="tests/publishers")


def binary_headers(ident: str) -> dict[str, str]:
    return binary_event_headers(TOPIC, ident, source="tests/publishers")


async def by_stratum_emit(harness: Harness) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STRATUM_", "OTEL_"))}
    env["STRATUM_DATA_DIR"] = str(harness.server.settings.data_dir)
    done = await asyncio.to_thread(
        subprocess.run,
        [STRATUM, "emit", TOPIC, "--tenant", "acme", "--data", json.dumps(DATA), "--json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    emitted: str = json.loads(done.stdout)["run_id"]
    return emitted


async def by_nats_py(harness: Harness, *, binary: bool) -> str:
    """What docs/events.md shows a plain nats-py publisher doing."""
    seed = seed_of(harness)
    ident = str(uuid.uuid4())
    subject = harness.subjects.event("acme", TOPIC)
    if binary:
        body, headers = orjson.dumps(DATA), binary_headers(ident)
    else:
        body, headers = orjson.dumps(event_body(ident)), {}
    headers |= sign_event(seed, subject, body, int(time.time() * 1000))
    nc = await nats.connect(harness.server.nats_url, nkeys_seed_str=seed)
    try:
        await nc.jetstream().publish(subject, body, headers=headers | {"Nats-Msg-Id": ident})
    finally:
        await nc.close()
    return run_id("acme", ident)


async def by_http(harness: Harness, *, binary: bool) -> str:
    """A CloudEvent POSTed to the ingress; signed over the subject it will go on."""
    ident = str(uuid.uuid4())
    subject = harness.subjects.event("acme", TOPIC)
    if binary:
        body, headers = orjson.dumps(DATA), binary_headers(ident)
    else:
        body = orjson.dumps(event_body(ident))
        headers = {"content-type": "application/cloudevents+json"}
    headers |= sign_event(seed_of(harness), subject, body, int(time.time() * 1000))
    async with httpx.AsyncClient(base_url=harness.server.http_url) as http:
        response = await http.post("/events/acme", content=body, headers=headers)
    assert response.status_code == 202, response.text
    answered: str = response.json()["run_id"]
    assert answered == run_id("acme", ident)
    return answered


def shape(view: dict[str, Any]) -> dict[str, Any]:
    """What must be the same whoever published: outcome, plan, inputs and who it was."""
    return {
        "status": view["status"],
        "topic": view["topic"],
        "actor": view["actor"],
        "inputs_hash": view["inputs_hash"],
        "graph_version": view["graph_version"],
        "stages": [stage["nodes"] for stage in view["stages"]],
        "nodes": {name: node["status"] for name, node in view["nodes"].items()},
    }


async def test_every_publisher_starts_the_same_run(signed: Harness) -> None:
    runs = {
        "stratum emit": await by_stratum_emit(signed),
        "nats-py binary": await by_nats_py(signed, binary=True),
        "nats-py structured": await by_nats_py(signed, binary=False),
        "http binary": await by_http(signed, binary=True),
        "http structured": await by_http(signed, binary=False),
    }
    assert len(set(runs.values())) == len(runs)  # five events, five runs
    shapes = {how: shape(await signed.finished(run)) for how, run in runs.items()}
    first = shapes["stratum emit"]
    assert first["status"] == "Succeeded" and first["actor"] == "publisher:local-acme"
    for how, seen in shapes.items():
        assert seen == first, how


async def test_the_http_ingress_refuses_what_it_cannot_route_or_verify(signed: Harness) -> None:
    ident = str(uuid.uuid4())
    body = orjson.dumps(DATA)
    async with httpx.AsyncClient(base_url=signed.server.http_url) as http:
        unsigned = await http.post("/events/acme", content=body, headers=binary_headers(ident))
        no_type = await http.post("/events/acme", content=b'{"specversion": "1.0", "id": "x"}')
        not_json = await http.post("/events/acme", content=b"{nope")
        # signed by acme's publisher for acme, posted to another tenant's door
        subject = signed.subjects.event("beta", TOPIC)
        headers = binary_headers(ident) | sign_event(
            seed_of(signed), subject, body, int(time.time() * 1000)
        )
        elsewhere = await http.post("/events/beta", content=body, headers=headers)
    assert unsigned.status_code == 401 and "unsigned" in unsigned.json()["error"]
    assert no_type.status_code == 400 and "no type" in no_type.json()["error"]
    assert not_json.status_code == 400 and "not JSON" in not_json.json()["error"]
    assert elsewhere.status_code == 401 and "belongs to tenant acme" in elsewhere.json()["error"]
    # none of them reached the bus: no run exists for the refused id in either tenant
    await asyncio.sleep(0.5)
    assert await signed.store.get_run(run_id("acme", ident)) is None
    assert await signed.store.get_run(run_id("beta", ident)) is None
