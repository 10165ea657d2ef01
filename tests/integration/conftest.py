"""What the integration tests share: the real `nu`, the curated PATH scripts see, and a
real embedded SurrealDB store."""

from __future__ import annotations

import os
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
