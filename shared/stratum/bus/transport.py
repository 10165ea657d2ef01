"""NATS for one Stratum process: the server (its own, or a configured one) and connections.

With its own nats-server and `nats_auth` on (the default for `stratum up`), every function
connects as its own NKey user, allowed only what it needs, and publishers are users that
may publish only on their tenant's event subjects (`stratum.bus.nkeys`). The permission
file is rewritten and nats-server reloaded (SIGHUP) when a function joins or a publisher
is added or revoked. With a configured `nats_url`, the deployment owns users and
permissions (`stratum nats config` writes them): each function connects with its own seed
from `nats_seeds` when there is one there, else all share the core connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import nats
from nats.aio.client import Client

from stratum.bus.local_server import LocalNatsServer
from stratum.bus.nkeys import (
    CORE_IDENTITY,
    FunctionGrant,
    existing_seeds,
    identity_seeds,
    inbox_prefix,
    server_config,
)
from stratum.bus.subjects import Subjects
from stratum.config import Settings
from stratum.errors import DependencyUnavailableError
from stratum.runtime import Function
from stratum.store import RunStore

log = logging.getLogger("stratum.transport")
CONNECT_SECONDS = 10.0
RELOAD_WAITS = 50  # x 0.1 s: how long a new user may wait for nats-server to admit it


class Transport:
    def __init__(
        self,
        settings: Settings,
        subjects: Subjects,
        store: RunStore,
        functions: Sequence[str],
    ) -> None:
        """`functions`: the names of the functions that connect, each as its own user."""
        self.settings = settings
        self.functions = tuple(functions)
        self.subjects = subjects
        self.store = store
        self.url = ""
        self._core: Client | None = None
        self._server: LocalNatsServer | None = None
        self._seeds: dict[str, str] = {}
        self._grants: dict[str, FunctionGrant] = {}
        self._connections: list[Client] = []

    @property
    def seeds(self) -> dict[str, str]:
        """Seeds of Stratum's own NKey users (empty unless it runs an authenticated
        nats-server): for its own tools and tests, never for messages or logs."""
        return dict(self._seeds)

    @property
    def authenticated(self) -> bool:
        """Whether this process runs the nats-server and its NKey users (and so keeps
        its permissions)."""
        return self._server is not None and bool(self._seeds)

    async def start(self) -> None:
        s = self.settings
        if s.nats_url:
            self.url = s.nats_url
            if s.nats_seeds:
                self._seeds = existing_seeds(Path(s.nats_seeds), (CORE_IDENTITY, *self.functions))
        else:
            config = None
            if s.nats_auth:
                self._seeds = identity_seeds(s.data_dir / "nkeys", (CORE_IDENTITY, *self.functions))
                config = s.data_dir / "nats-auth.conf"
                await self._write_config()
            self._server = LocalNatsServer(s.data_dir / "nats", config_file=config)
            await self._server.start()
            self.url = self._server.url
        self._core = await self._connect(CORE_IDENTITY)

    async def admit(self, functions: Iterable[tuple[Function, str]]) -> None:
        """Allow each (function, its durable) what it needs: one reload of nats-server
        for all of them, and none if nothing changed."""
        if not self.authenticated:
            return
        changed = False
        for function, durable in functions:
            emits = tuple(self.subjects.internal(kind) for kind in function.emits)
            grant = FunctionGrant(function.name, function.stream, durable, emits, function.listens)
            changed |= self._grants.get(function.name) != grant
            self._grants[function.name] = grant
        if changed:
            await self.reload()

    @property
    def core(self) -> Client:
        """The core identity's connection (streams, the API, publishers' admin)."""
        if self._core is None:
            raise RuntimeError("the transport is not started")
        return self._core

    async def connection_for(self, function: Function) -> Client:
        """The connection an admitted `function` consumes and publishes on: as its own
        NKey user when it has a seed (always, when this process runs the server), else
        the shared one."""
        return await self.connection_as(function.name)

    async def connection_as(self, name: str) -> Client:
        """A connection as the function called `name` (see `connection_for`)."""
        if name not in self._seeds:
            return self.core
        for attempt in range(RELOAD_WAITS):
            try:
                connection = await self._connect(name)
                break
            except DependencyUnavailableError as error:
                # a busy nats-server may apply the reload that admits this user a little
                # later than we connect: only that is worth waiting for
                if "Authorization Violation" not in str(error) or attempt == RELOAD_WAITS - 1:
                    raise
                await asyncio.sleep(0.1)
        self._connections.append(connection)
        return connection

    async def reload(self) -> None:
        """Rewrite the permission file (functions, current publishers) and have nats-server
        apply it; a no-op unless this process runs an authenticated server."""
        if not self.authenticated or self._server is None or self._server.process is None:
            return
        await self._write_config()
        self._server.process.send_signal(signal.SIGHUP)
        await asyncio.sleep(0.1)  # nats-server applies a reload within milliseconds

    async def stop(self) -> None:
        for connection in [*self._connections, self._core]:
            if connection is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(connection.close(), 5)
        if self._server is not None:
            self._server.stop()

    async def _write_config(self) -> None:
        publishers = await self.store.publishers()
        text = server_config(self._seeds, self._grants.values(), publishers, self.subjects)
        path = self.settings.data_dir / "nats-auth.conf"
        path.write_text(text)
        path.chmod(0o600)

    async def _connect(self, identity: str) -> Client:
        credentials: dict[str, Any] = {}
        if identity in self._seeds:
            credentials = {
                "nkeys_seed_str": self._seeds[identity],
                "inbox_prefix": inbox_prefix(identity) if identity != CORE_IDENTITY else None,
            }
            credentials = {k: v for k, v in credentials.items() if v is not None}
        try:
            # bounded: with reconnects allowed, nats-py would retry a dead URL forever
            return await asyncio.wait_for(
                nats.connect(
                    self.url,
                    connect_timeout=3,
                    max_reconnect_attempts=-1,
                    allow_reconnect=True,
                    error_cb=_log_nats_error,
                    **credentials,
                ),
                CONNECT_SECONDS,
            )
        except TimeoutError:
            raise DependencyUnavailableError(
                f"NATS at {self.url} is not reachable (no connection within "
                f"{CONNECT_SECONDS:.0f} s)"
            ) from None
        except Exception as error:
            raise DependencyUnavailableError(
                f"NATS at {self.url} is not reachable as {identity}: "
                f"{type(error).__name__}: {error}"
            ) from None


async def _log_nats_error(error: Exception) -> None:
    """nats-py reports connection trouble here; one line, not a traceback."""
    log.warning(f"nats: {type(error).__name__}: {error}")
