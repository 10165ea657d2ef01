"""What the integration tests share: the real `nu`, the curated PATH scripts see, and a
real embedded SurrealDB store — or, for the store's contract suite (`contract_store`), one
store per implementation: embedded in memory, embedded on disk with durable writes, and a
SurrealDB server when STRATUM_TEST_SURREAL_URL names one."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from stratum.executor import DEFAULT_TOOLS, curated_path
from stratum.store import Database, RunStore

ROOT = Path(__file__).resolve().parents[2]
NU = ROOT / ".venv" / "bin" / "nu"


@pytest.fixture(scope="session")
def tool_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    assert NU.exists(), f"{NU} missing: run `make install`"
    return curated_path(tmp_path_factory.mktemp("tools"), DEFAULT_TOOLS, os.environ["PATH"])


@pytest_asyncio.fixture(loop_scope="session")
async def store(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RunStore]:
    """A run store of its own on embedded SurrealDB (surrealkv, no fsync)."""
    database = await Database.open(
        f"surrealkv://{tmp_path_factory.mktemp('store')}/db",
        namespace="t",
        database="t",
        durable_writes=False,
    )
    runs = RunStore(database)
    await runs.ensure_schema()
    yield runs
    await database.close()


# the store implementations the contract suite runs against (a server only where given)
SERVER_URL = os.environ.get("STRATUM_TEST_SURREAL_URL", "")
CONTRACT_STORES = ["embedded-memory", "embedded-durable", "server"]


@pytest_asyncio.fixture(loop_scope="session", params=CONTRACT_STORES)
async def contract_store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RunStore]:
    """A fresh store on each implementation; the server one in a namespace of its own
    (STRATUM_TEST_SURREAL_USER / _PASSWORD sign in, root/root by default)."""
    kind = request.param
    if kind == "server" and not SERVER_URL:
        pytest.skip("no SurrealDB server: set STRATUM_TEST_SURREAL_URL to run the contract on one")
    if kind == "embedded-memory":
        database = await Database.open("mem://", namespace="t", database="t", durable_writes=False)
    elif kind == "embedded-durable":
        path = tmp_path_factory.mktemp("contract")
        before = os.environ.get("SURREAL_SYNC_DATA")
        database = await Database.open(f"surrealkv://{path}/db", namespace="t", database="t")
        if before is None:  # fsync for this store only: the engine read it as it opened
            os.environ.pop("SURREAL_SYNC_DATA", None)
    else:
        database = await Database.open(
            SERVER_URL,
            namespace=f"contract-{uuid.uuid4().hex[:8]}",
            database="t",
            user=os.environ.get("STRATUM_TEST_SURREAL_USER", "root"),
            password=os.environ.get("STRATUM_TEST_SURREAL_PASSWORD", "root"),
        )
    runs = RunStore(database)
    await runs.ensure_schema()
    yield runs
    await database.close()
