"""A whole Stratum (five functions, HTTP API) per test, on the session's nats-server."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import nats
import orjson
import pytest
import pytest_asyncio
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from stratum.bus.nkeys import CORE_IDENTITY
from stratum.clock import iso, utc_now
from stratum.config import Settings
from stratum.ids import run_id
from stratum.store import PublisherRecord
from stratum.telemetry import tracing
from stratum.trust.signing import new_user_seed, public_key, sign_event
from stratum_host.server import StratumServer
from tests.conftest import ROOT, Vault, eventually, make_settings
from tests.events import publisher_event

STRATUM = str(Path(sys.executable).parent / "stratum")


class Harness:
    """A running Stratum plus the publisher-side helpers a test needs."""

    def __init__(self, server: StratumServer, nc: Any) -> None:
        self.server = server
        self.nc = nc
        self.store = server.store
        self.subjects = server.subjects

    async def emit(
        self, topic: str, data: dict[str, Any], *, tenant: str = "acme", event_id: str | None = None
    ) -> str:
        """Publish a CloudEvent as any NATS client would; the run id it starts."""
        ident = event_id or str(uuid.uuid4())
        body = publisher_event(topic, data, ident=ident)
        await self.nc.jetstream().publish(self.subjects.event(tenant, topic), orjson.dumps(body))
        return run_id(tenant, ident)

    async def add_publisher(self, name: str, tenant: str) -> str:
        """Register a publisher of `tenant`, as `stratum publisher add` does; its seed."""
        seed = new_user_seed()
        await self.store.add_publisher(
            PublisherRecord(
                name=name, tenant=tenant, public_key=public_key(seed), created_at=iso(utc_now())
            )
        )
        return seed

    async def emit_signed(
        self, seed: str, topic: str, data: dict[str, Any], *, tenant: str = "acme"
    ) -> str:
        """Publish a CloudEvent signed with the publisher's `seed`; the run id it starts."""
        ident = str(uuid.uuid4())
        subject = self.subjects.event(tenant, topic)
        body = orjson.dumps(
            {"specversion": "1.0", "id": ident, "source": "ci", "type": topic, "data": data}
        )
        headers = sign_event(seed, subject, body, int(time.time() * 1000))
        await self.nc.jetstream().publish(subject, body, headers=headers)
        return run_id(tenant, ident)

    async def finished(self, run: str, timeout: float = 60.0) -> dict[str, Any]:
        """The run's read model once a terminal event has been projected."""
        return await self.settled(run, lambda view: bool(view.get("finished")), timeout)

    async def held(self, run: str, resumption: int = 0, timeout: float = 60.0) -> dict[str, Any]:
        """The run's read model once it is Held in its `resumption`-th resumption."""

        def held_there(view: dict[str, Any]) -> bool:
            return view.get("status") == "Held" and view.get("resumption", 0) == resumption

        return await self.settled(run, held_there, timeout)

    async def settled(
        self, run: str, until: Callable[[dict[str, Any]], bool], timeout: float = 60.0
    ) -> dict[str, Any]:
        """The run's read model once `until` holds of it and every event is projected."""

        async def probe() -> dict[str, Any] | None:
            view = await self.store.get_view(run)
            if not view or not until(view):
                return None
            # every event of the run has been folded in, not just the terminal one
            complete = await self.store.count_history(run) >= await self.store.count_run_events(run)
            return view if complete else None

        result: dict[str, Any] = await eventually(probe, timeout=timeout)
        return result


def cli_env(stratum: Harness) -> dict[str, str]:
    """The CLI finds the test's Stratum through its data dir (endpoint.json, its seeds)."""
    values = {k: v for k, v in os.environ.items() if not k.startswith("STRATUM_")}
    return values | {"STRATUM_DATA_DIR": str(stratum.server.settings.data_dir)}


async def cli(stratum: Harness, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `stratum ARGS` beside the running Stratum (in a thread: it keeps serving)."""
    return await asyncio.to_thread(
        subprocess.run,
        [STRATUM, *args],
        cwd=ROOT,
        env=cli_env(stratum),
        capture_output=True,
        text=True,
        timeout=120,
    )


@asynccontextmanager
async def running(settings: Settings, *, http: bool = True) -> AsyncIterator[Harness]:
    """A Stratum started with `settings`, and a client connection beside it."""
    server = StratumServer(settings)
    await server.start(http=http)
    # with its own nats-server and NKey users, the test's client is Stratum's core user
    seed = server.transport.seeds.get(CORE_IDENTITY)
    nc = await nats.connect(server.nats_url, **({"nkeys_seed_str": seed} if seed else {}))
    try:
        yield Harness(server, nc)
    finally:
        await nc.close()
        await server.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def stratum(tmp_path: Path, nats_url: str, openbao: Vault) -> AsyncIterator[Harness]:
    # the session's OpenBao (seeded like `stratum up` seeds its own) saves a start per test
    vault = {"vault_addr": openbao.addr, "vault_token": openbao.token}
    async with running(make_settings(tmp_path, nats_url, **vault)) as harness:
        yield harness


@pytest.fixture()
def spans() -> Iterator[InMemorySpanExporter]:
    """Stratum's spans, recorded in memory for this test (as an OTLP exporter would get
    them)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use(provider)
    try:
        yield exporter
    finally:
        tracing.use(trace.get_tracer_provider())
        provider.shutdown()
