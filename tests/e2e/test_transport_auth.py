"""The transport plane, enforced by nats-server itself: with Stratum's own server, every
function and publisher is an NKey user allowed only its own subjects."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import nats
import orjson
import pytest
import pytest_asyncio

from stratum.bus.nkeys import CORE_IDENTITY
from stratum.clock import iso, utc_now
from stratum.ids import run_id
from stratum.store import PublisherRecord
from stratum.trust.signing import SIGNATURE_HEADER, new_user_seed, public_key, sign_event
from tests.conftest import make_settings
from tests.e2e.conftest import Harness, running

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(loop_scope="session")
async def guarded(tmp_path: Path) -> AsyncIterator[Harness]:
    """Stratum with its own nats-server and NKey users (nats_url left empty)."""
    settings = make_settings(tmp_path, "", nats_auth=True, require_signatures=True)
    async with running(settings, http=False) as harness:
        yield harness


async def register(stratum: Harness, name: str, tenant: str) -> str:
    seed = new_user_seed()
    record = PublisherRecord(
        name=name, tenant=tenant, public_key=public_key(seed), created_at=iso(utc_now())
    )
    await stratum.store.add_publisher(record)
    await stratum.server.transport.reload()
    return seed


async def connect_as(url: str, seed: str, refusals: list[str]) -> Any:
    async def collect(error: Exception) -> None:
        refusals.append(str(error))

    return await nats.connect(
        url, nkeys_seed_str=seed, allow_reconnect=False, connect_timeout=3, error_cb=collect
    )


async def test_a_publisher_may_publish_only_on_its_own_tenants_subjects(guarded: Harness) -> None:
    seed = await register(guarded, "ci", "acme")
    refusals: list[str] = []
    nc = await connect_as(guarded.server.nats_url, seed, refusals)
    try:
        js = nc.jetstream()
        await js.publish(guarded.subjects.event("acme", "crate.push"), b"{}")  # its own: fine
        for subject in (
            guarded.subjects.event("globex", "crate.push"),  # another tenant's
            guarded.subjects.internal("stratum.run.succeeded"),  # Stratum's own events
        ):
            with pytest.raises(Exception):  # noqa: B017  (nats-py only times out)
                await js.publish(subject, b"{}", timeout=1)
        await asyncio.sleep(0.2)
        assert any("permissions violation" in r and "globex" in r for r in refusals), refusals
        assert any("permissions violation" in r and "run.succeeded" in r for r in refusals)
    finally:
        await nc.close()


async def test_unknown_and_revoked_keys_cannot_even_connect(guarded: Harness) -> None:
    refusals: list[str] = []
    with pytest.raises(Exception, match="Authorization Violation"):
        await connect_as(guarded.server.nats_url, new_user_seed(), refusals)

    seed = await register(guarded, "old-bot", "acme")
    await (await connect_as(guarded.server.nats_url, seed, refusals)).close()  # it could
    await guarded.store.revoke_publisher("old-bot", iso(utc_now()))
    await guarded.server.transport.reload()
    with pytest.raises(Exception, match="Authorization Violation"):
        await connect_as(guarded.server.nats_url, seed, refusals)


async def test_functions_run_as_users_of_their_own(guarded: Harness) -> None:
    """Each function's user may publish only what it emits: the planner cannot forge a
    node result, the projector cannot publish at all."""
    seeds = guarded.server.transport.seeds
    assert CORE_IDENTITY in seeds and len(set(seeds.values())) == len(seeds)
    for identity, forbidden in (
        ("planner", "stratum.node.succeeded"),
        ("projector", "stratum.run.succeeded"),
        ("ingest", "stratum.stage.execute"),
    ):
        refusals: list[str] = []
        nc = await connect_as(guarded.server.nats_url, seeds[identity], refusals)
        try:
            await nc.publish(guarded.subjects.internal(forbidden), b"{}")
            await nc.flush()
            await asyncio.sleep(0.2)
            assert any("permissions violation" in r for r in refusals), (identity, refusals)
        finally:
            await nc.close()


def cloudevent(ident: str) -> bytes:
    return orjson.dumps(
        {
            "specversion": "1.0",
            "id": ident,
            "source": "ci",
            "type": "crate.push",
            "data": {"source": "nickel/examples/sample-crate"},
        }
    )


async def test_only_events_signed_by_a_publisher_of_the_tenant_run(guarded: Harness) -> None:
    seed = await register(guarded, "ci", "acme")
    refusals: list[str] = []
    nc = await connect_as(guarded.server.nats_url, seed, refusals)
    subject = guarded.subjects.event("acme", "crate.push")
    now = int(time.time() * 1000)
    stranger = new_user_seed()  # never registered
    cases: dict[str, tuple[bytes, dict[str, str]]] = {}
    for case in ("signed", "unsigned", "altered", "replayed", "forged", "unknown key"):
        ident = str(uuid.uuid4())
        body = cloudevent(ident)
        headers = sign_event(seed, subject, body, now)
        if case == "unsigned":
            headers = {}
        elif case == "altered":  # signed, then changed on the way
            body = body.replace(b"sample-crate", b"other-crate")
        elif case == "replayed":  # an event signed ten minutes ago
            headers = sign_event(seed, subject, body, now - 600_000)
        elif case == "forged":  # claims to be ci, signed by someone else
            headers[SIGNATURE_HEADER] = sign_event(stranger, subject, body, now)[SIGNATURE_HEADER]
        elif case == "unknown key":
            headers = sign_event(stranger, subject, body, now)
        cases[case] = (body, headers)
        await nc.jetstream().publish(subject, body, headers={"Nats-Msg-Id": ident, **headers})
    await nc.close()

    views = {
        case: await guarded.finished(run_id("acme", orjson.loads(body)["id"]))
        for case, (body, _) in cases.items()
    }
    assert views["signed"]["status"] == "Succeeded"
    assert views["signed"]["actor"] == "publisher:ci"
    reasons = {
        "unsigned": "unsigned event",
        "altered": "does not match",
        "replayed": "outside the 300 s window",
        "forged": "does not match",
        "unknown key": "unknown publisher key",
    }
    for case, reason in reasons.items():
        view = views[case]
        assert view["status"] == "Denied", (case, view["status"])
        assert reason in view["error"], (case, view["error"])
        assert view["nodes"] == {}, case  # nothing of it ran
