"""`stratum up` as a library: every piece started in a fixed order, stopped in reverse.

Order: config -> SurrealDB -> secret store (Vault, or a dev OpenBao) -> NATS and streams
-> graph -> watcher -> HTTP -> consumers -> stuck-run watchdog.
A missing or unreachable dependency fails fast with one message naming it. Tests start
the same object with their own settings.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from starlette.types import ASGIApp

from functions.projector import app as projector
from stratum.authz import PolicyRegistry
from stratum.bus.local_server import free_port
from stratum.bus.nkeys import CORE_IDENTITY, identity_seeds
from stratum.bus.subjects import Subjects
from stratum.bus.transport import Transport
from stratum.config import Settings
from stratum.errors import DependencyUnavailableError, PolicyError
from stratum.executor import ExecutorConfig
from stratum.graph.registry import GraphRegistry
from stratum.runtime import Dependencies, JetStreamRunner, Publisher, ensure_streams
from stratum.runtime.jetstream import durable_name, record_queue_depths
from stratum.store import Database, RunStore
from stratum.telemetry import tracing
from stratum.trust.dev_publishers import ensure_dev_publishers
from stratum.trust.signing import public_key
from stratum_host.api.auth import SignedRequests
from stratum_host.function_host import (
    build_functions,
    executor_config,
    kill_orphans,
    open_database,
)
from stratum_host.registry import FUNCTION_NAMES
from stratum_host.watchdog import Watchdog

if TYPE_CHECKING:  # hvac costs ~0.1 s to import: not for CLI commands that only read
    from stratum.secrets import SecretStore

log = logging.getLogger("stratum")
CONNECT_SECONDS = 10.0


@dataclass
class StratumServer:
    settings: Settings
    subjects: Subjects = field(init=False)
    store: RunStore = field(init=False)
    graphs: GraphRegistry = field(init=False)
    policies: PolicyRegistry = field(init=False)
    projections: projector.Projector = field(init=False)
    nats_url: str = ""
    http_url: str = ""
    runners: list[JetStreamRunner] = field(default_factory=list)
    transport: Transport = field(init=False)
    _database: Database | None = None
    _http: Any = None
    _tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    watchdog: Watchdog | None = None
    secrets: SecretStore | None = None
    _publisher: Publisher = field(init=False)
    _executor: ExecutorConfig = field(init=False)

    async def start(self, *, http: bool = True) -> None:
        s = self.settings
        tracing.setup_from_env()  # OTEL_* decide; off (no-op) when none is set
        self.subjects = Subjects(s.subject_prefix)
        s.data_dir.mkdir(parents=True, exist_ok=True)
        s.resolve_nu()  # no nu, no start: said before anything is opened
        kill_orphans(s)
        self._database = await open_database(s)
        self.store = RunStore(self._database)
        await self.store.ensure_schema()
        # node secrets: the configured Vault, else a dev OpenBao seeded with the examples
        from stratum.secrets import SecretStore

        self.secrets = await SecretStore.open(
            s.vault_addr, s.vault_token, s.data_dir / "openbao", s.root / "deploy/dev-secrets.json"
        )

        await ensure_dev_publishers(self.store, s.data_dir, s.dev_publishers)
        self.transport = Transport(s, self.subjects, self.store, FUNCTION_NAMES)
        await self.transport.start()
        self.nats_url = self.transport.url
        js = self.transport.core.jetstream()
        await ensure_streams(js, self.subjects, s.duplicate_window)

        self.projections = projector.Projector(self.store)
        self.graphs = GraphRegistry(s.definitions, s.lib_dir, self.store)
        if s.definitions_ref:  # an OCI artifact, verified before Nickel sees it, or no start
            self.graphs.definitions = await self._follow_definitions()
        self.graphs.reload()
        self.policies = PolicyRegistry(s.policies)
        if not self.policies.reload():  # no previous set to keep: nothing could be allowed
            raise PolicyError(self.policies.error or f"no policies in {s.policies}")
        if s.watch:
            self._tasks.append(asyncio.create_task(self._watch(), name="graph-watcher"))

        if http:
            await self._start_http()

        publisher = Publisher(js, self.subjects)
        self._publisher = publisher
        self._executor = executor_config(s, self.secrets)
        await self.add_instance(self.projections)
        if s.watchdog_interval > 0:
            self.watchdog = Watchdog(
                self.store,
                self.graphs,
                publisher,
                stuck_after=s.stuck_after,
                interval=s.watchdog_interval,
            )
            self._tasks.append(asyncio.create_task(self.watchdog.run_forever(), name="watchdog"))
        self._write_endpoint()
        log.info("stratum is up", extra={"nats": self.nats_url, "http": self.http_url})

    async def add_instance(self, projections: projector.Projector | None = None) -> None:
        """Start one consumer per function on the shared durables. Called once by `start`;
        a second call adds an instance of every function beside the first (with its own
        projector cache), as another process would: they share the work (queue semantics)
        and must not lose each other's updates."""
        dependencies = Dependencies(
            self.store,
            self.subjects,
            self._publisher,
            logging.getLogger("stratum.functions"),
            self.settings,
            graphs=self.graphs,
            policies=self.policies,
            executor=self._executor,
            projections=projections,
        )
        functions = build_functions(dependencies)
        prefix = self.settings.subject_prefix.replace(".", "-")
        await self.transport.admit((f, durable_name(prefix, f)) for f in functions)
        for function in functions:
            # its own connection (and NKey user, when this process runs nats-server)
            nc = await self.transport.connection_for(function)
            js = nc.jetstream()
            publisher = Publisher(js, self.subjects)
            runner = JetStreamRunner(
                function, js, publisher, self.store, durable_prefix=prefix, connection=nc
            )
            await runner.start()
            self.runners.append(runner)

    async def _start_http(self) -> None:
        import uvicorn

        from stratum.trust.publisher_auth import SignatureRules
        from stratum_host.api.http import create_app
        from stratum_host.api.ingress import ingress_routes
        from stratum_host.api.steering import steering_routes

        s = self.settings
        port = s.http_port or free_port(s.http_host)
        jetstream = self.transport.core.jetstream()
        rules = SignatureRules(s.require_signatures, s.signature_window)
        app: ASGIApp = create_app(
            self.store,
            self.graphs,
            self.projections,
            jetstream=jetstream,
            on_publishers_changed=self.transport.reload,
            policies=self.policies,
            before_metrics=lambda: record_queue_depths(self.runners),
            extra_routes=[
                *ingress_routes(self.subjects, jetstream, rules, self.store.publisher_by_key),
                *steering_routes(
                    self.store,
                    self.policies,
                    Publisher(jetstream, self.subjects),
                    signatures_required=s.require_signatures,
                ),
            ],
        )
        if s.require_signatures:  # callers sign requests too: the operator, or a publisher
            operator_seed = identity_seeds(s.data_dir / "nkeys", [CORE_IDENTITY])[CORE_IDENTITY]
            app = SignedRequests(app, self.store, public_key(operator_seed), s.signature_window)
        config = uvicorn.Config(
            app, host=s.http_host, port=port, log_level="warning", lifespan="off", access_log=False
        )
        self._http = uvicorn.Server(config)
        self._http.install_signal_handlers = lambda: None
        serving = asyncio.create_task(self._serve_http(), name="http")
        self._tasks.append(serving)
        while not self._http.started:
            if serving.done():  # could not bind, or crashed while starting
                raise DependencyUnavailableError(
                    f"HTTP API could not listen on {s.http_host}:{port} (see the log above)"
                )
            await asyncio.sleep(0.02)
        self.http_url = f"http://{s.http_host}:{port}"

    async def _serve_http(self) -> None:
        # uvicorn calls sys.exit() when it cannot bind; keep that from ending the process
        # before the rest is stopped in order
        with contextlib.suppress(SystemExit):
            await self._http.serve()

    async def _watch(self) -> None:
        from watchfiles import awatch

        s = self.settings
        # pulled artifacts change only through the registry (`_follow_definitions`)
        folders = [s.lib_dir, s.policies] + ([] if s.definitions_ref else [s.definitions])
        async for changes in awatch(*folders, debounce=300):
            changed = [Path(path) for _, path in changes]
            if any(path.is_relative_to(s.policies) for path in changed):
                await asyncio.to_thread(self.policies.reload)
            if any(not path.is_relative_to(s.policies) for path in changed):
                await asyncio.to_thread(self.graphs.reload)  # Nickel runs off the event loop

    async def _follow_definitions(self) -> Path:
        """Pull and verify the artifact `definitions_ref` names (ArtifactError: refuse to
        start) and poll the reference for newer ones; the folder to load."""
        from stratum.oci import RegistryDefinitions, follow

        s = self.settings
        source = RegistryDefinitions(s.definitions_ref, s.definitions)
        pulled = await asyncio.to_thread(source.pull)
        if s.oci_poll_interval > 0:
            poller = follow(source, self.graphs, s.oci_poll_interval)
            self._tasks.append(asyncio.create_task(poller, name="definitions-poller"))
        return pulled.folder

    def _write_endpoint(self) -> None:
        endpoint = {
            "http": self.http_url,
            "nats": self.nats_url,
            "pid": os.getpid(),
            "subject_prefix": self.settings.subject_prefix,
        }
        # written whole or not at all: other commands poll for this file and read it at once
        target = self.settings.endpoint_file
        partial = target.with_name(target.name + ".tmp")
        partial.write_bytes(orjson.dumps(endpoint, option=orjson.OPT_INDENT_2))
        partial.replace(target)

    async def stop(self) -> None:
        """Drain consumers, then stop HTTP, NATS (and our nats-server) and the database."""
        for runner in self.runners:
            await runner.stop()
        self.runners.clear()
        if self._http is not None:
            self._http.should_exit = True
        for task in self._tasks:
            if task.get_name() != "http":
                task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, 5)
        self._tasks.clear()
        if hasattr(self, "transport"):
            # consumers are stopped and every message handled is acked: nothing to drain
            await self.transport.stop()
        if self.secrets is not None:
            await self.secrets.stop()
        if self._database is not None:
            await self._database.close()
        await asyncio.to_thread(tracing.flush)  # the last spans, before the process goes
        with contextlib.suppress(FileNotFoundError):
            endpoint = orjson.loads(self.settings.endpoint_file.read_bytes())
            if endpoint.get("pid") == os.getpid():
                self.settings.endpoint_file.unlink()


def read_endpoint(data_dir: Path) -> dict[str, Any]:
    """Where a running `stratum up` listens; DependencyUnavailableError if none runs."""
    path = data_dir / "endpoint.json"
    try:
        endpoint: dict[str, Any] = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        raise DependencyUnavailableError(
            f"Stratum is not running (no {path}); start it with `make up` or `stratum up`"
        ) from None
    return endpoint
