"""Callers of the HTTP API sign their requests; a publisher sees its own tenant only, and
the query itself is filtered (another tenant's run is not found, not forbidden)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from stratum.bus.nkeys import CORE_IDENTITY
from stratum.trust.signing import SIGNATURE_HEADER, new_user_seed, sign_event
from stratum_host.cli.signed import SignedRequest
from tests.conftest import make_settings
from tests.e2e.conftest import Harness, running

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(loop_scope="session")
async def signed(tmp_path: Path, nats_url: str) -> AsyncIterator[Harness]:
    settings = make_settings(tmp_path, nats_url, require_signatures=True)
    async with running(settings) as harness:
        yield harness


async def publisher(stratum: Harness, name: str, tenant: str) -> str:
    return await stratum.add_publisher(name, tenant)


async def run_of(stratum: Harness, seed: str, tenant: str) -> str:
    """A finished run of `tenant`, triggered by an event `seed` signed."""
    run = await stratum.emit_signed(seed, "crate.push", {}, tenant=tenant)
    await stratum.finished(run)
    return run


def client(stratum: Harness, seed: str | None) -> httpx.AsyncClient:
    auth = SignedRequest(seed) if seed else None
    return httpx.AsyncClient(base_url=stratum.server.http_url, auth=auth, timeout=10)


async def test_each_caller_sees_what_it_may(signed: Harness, tmp_path: Path) -> None:
    acme_seed = await publisher(signed, "ci", "acme")
    globex_seed = await publisher(signed, "bot", "globex")
    acme_run = await run_of(signed, acme_seed, "acme")
    globex_run = await run_of(signed, globex_seed, "globex")
    operator = (tmp_path / "data" / "nkeys" / f"{CORE_IDENTITY}.seed").read_text().strip()

    async with client(signed, None) as anonymous:
        response = await anonymous.get("/api/runs")
        assert response.status_code == 401 and "unsigned request" in response.json()["error"]
        assert (await anonymous.get("/healthz")).status_code == 200  # health stays open

    async with client(signed, operator) as admin:
        listed = {r["run_id"] for r in (await admin.get("/api/runs")).json()["runs"]}
        assert {acme_run, globex_run} <= listed

    async with client(signed, globex_seed) as globex:
        listed = {r["run_id"] for r in (await globex.get("/api/runs")).json()["runs"]}
        assert listed == {globex_run}
        # asking for another tenant changes nothing: the filter is the caller's tenant
        asked = await globex.get("/api/runs", params={"tenant": "acme"})
        assert {r["run_id"] for r in asked.json()["runs"]} == {globex_run}
        missing = await globex.get(f"/api/runs/{acme_run}")
        assert missing.status_code == 404 and missing.json()["error"] == f"unknown run {acme_run}"
        assert (await globex.get(f"/api/runs/{globex_run}")).status_code == 200
        audit = (await globex.get("/api/audit")).text
        assert globex_run in audit and acme_run not in audit
        refused = await globex.post("/api/replay")
        assert refused.status_code == 403 and "operator only" in refused.json()["error"]


async def test_a_tampered_or_stale_request_is_refused(signed: Harness) -> None:
    seed = await publisher(signed, "ci2", "acme")
    now = int(time.time() * 1000)
    async with httpx.AsyncClient(base_url=signed.server.http_url, timeout=10) as raw:
        good = sign_event(seed, "GET /api/runs", b"", now)
        assert (await raw.get("/api/runs", headers=good)).status_code == 200
        # the same signature on another request line
        moved = await raw.get("/api/runs", params={"limit": "1"}, headers=good)
        assert moved.status_code == 401 and "does not match" in moved.json()["error"]
        forged = dict(
            good, **{SIGNATURE_HEADER: sign_event(new_user_seed(), "x", b"", now)[SIGNATURE_HEADER]}
        )
        assert (await raw.get("/api/runs", headers=forged)).status_code == 401
        stale = sign_event(seed, "GET /api/runs", b"", now - 3_600_000)
        response = await raw.get("/api/runs", headers=stale)
        assert response.status_code == 401 and "outside" in response.json()["error"]
