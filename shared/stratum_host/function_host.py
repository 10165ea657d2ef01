"""The five functions built from settings: for `stratum up` (on JetStream) and for a
function served by itself as a CloudEvents HTTP endpoint (`stratum function serve`,
Knative), where no NATS is involved at all.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from stratum.authz import PolicyRegistry
from stratum.bus.subjects import Subjects
from stratum.config import Settings
from stratum.errors import PolicyError
from stratum.executor import ExecutorConfig, curated_path, sweep_orphans
from stratum.graph.registry import GraphRegistry
from stratum.runtime import Dependencies, Function
from stratum.runtime.http_adapter import FunctionEndpoint, SinkPublisher
from stratum.runtime.jetstream import durable_name
from stratum.runtime.publisher import Announcer
from stratum.store import Database, RunStore
from stratum.telemetry import tracing
from stratum.telemetry.health import LoadState, unready
from stratum_host.registry import FUNCTION_NAMES, chosen

if TYPE_CHECKING:
    from stratum.secrets import SecretStore

log = logging.getLogger("stratum")


def build_functions(
    dependencies: Dependencies, names: Collection[str] = FUNCTION_NAMES
) -> list[Function]:
    """The functions named (all by default, in pipeline order), built on `dependencies`."""
    return [declaration.bind(dependencies) for declaration in chosen(names)]


async def open_database(settings: Settings) -> Database:
    """The configured SurrealDB: a server URL, else the embedded one under data_dir."""
    return await Database.open(
        settings.database_url,
        namespace=settings.surreal_namespace,
        database=settings.surreal_database,
        user=settings.surreal_user,
        password=settings.surreal_password,
        durable_writes=settings.durable_writes,
    )


def kill_orphans(settings: Settings) -> None:
    """Scripts a killed instance on this host left running would race the runs resumed
    here: they are killed first, each named in the log."""
    for orphan in sweep_orphans(settings.data_dir):
        log.warning(
            "killed a script left running by a dead instance",
            extra={"run_id": orphan.run_id, "node": orphan.node, "pid": orphan.pid},
        )


def executor_config(settings: Settings, secrets: SecretStore) -> ExecutorConfig:
    """How scripts run: nu, the curated PATH, the data dir, node credentials."""
    nu_path = settings.nu_path or curated_path(
        settings.data_dir / "toolbin", settings.nu_tools, os.environ.get("PATH", "")
    )
    return ExecutorConfig(
        data_dir=settings.data_dir,
        workdir=settings.root,
        nu_bin=settings.resolve_nu(),
        nu_path=nu_path,
        kill_grace=settings.kill_grace,
        credentials=secrets.broker.credentials,
    )


@dataclass
class FunctionHost:
    """What the named functions need, without NATS: the database, the graph, and — as
    each needs them — the policies, the secret store and the executor. Several functions
    may share one host (one embedded database per process); `stop` ends what `open`
    started."""

    settings: Settings
    names: tuple[str, ...]
    database: Database
    store: RunStore
    subjects: Subjects
    graphs: GraphRegistry
    policies: PolicyRegistry | None = None
    secrets: SecretStore | None = None
    executor: ExecutorConfig | None = None
    sinks: list[SinkPublisher] = field(default_factory=list)

    @classmethod
    async def open(cls, settings: Settings, names: Collection[str]) -> FunctionHost:
        s = settings
        declarations = chosen(names)
        wanted = tuple(declaration.name for declaration in declarations)
        tracing.setup_from_env()  # OTEL_* decide, as for `stratum up`
        s.data_dir.mkdir(parents=True, exist_ok=True)
        database = await open_database(s)
        store = RunStore(database)
        host = cls(
            s,
            wanted,
            database,
            store,
            Subjects(s.subject_prefix),
            GraphRegistry(s.definitions, s.lib_dir, store),
        )
        try:
            await store.ensure_schema()
            host.graphs.reload()
            if any(declaration.decides_triggers for declaration in declarations):
                host.policies = PolicyRegistry(s.policies)
                if not host.policies.reload():
                    raise PolicyError(host.policies.error or f"no policies in {s.policies}")
            if any(declaration.runs_scripts for declaration in declarations):
                from stratum.secrets import SecretStore

                kill_orphans(s)
                host.secrets = await SecretStore.open(
                    s.vault_addr,
                    s.vault_token,
                    s.data_dir / "openbao",
                    s.root / "deploy/dev-secrets.json",
                )
                host.executor = executor_config(s, host.secrets)
        except BaseException:
            await host.stop()
            raise
        return host

    def functions(
        self, announcer: Announcer, names: Collection[str] | None = None
    ) -> list[Function]:
        """The named functions (the host's by default), announcing on `announcer`."""
        dependencies = Dependencies(
            self.store,
            self.subjects,
            announcer,
            logging.getLogger("stratum.functions"),
            self.settings,
            graphs=self.graphs,
            policies=self.policies,
            executor=self.executor,
        )
        return build_functions(dependencies, self.names if names is None else names)

    def endpoint(self, name: str, sink: str) -> FunctionEndpoint:
        """Function `name` as a CloudEvents HTTP endpoint whose further events go to
        `sink` (Knative's `K_SINK`)."""
        publisher = SinkPublisher(self.subjects, sink)
        self.sinks.append(publisher)
        [function] = self.functions(publisher, [name])
        group = durable_name(self.settings.subject_prefix.replace(".", "-"), function)
        return FunctionEndpoint(
            function,
            self.store,
            publisher,
            group=group,
            ready=lambda: self.missing(name),
            loaded=lambda: self.loaded(name),
        )

    def loaded(self, name: str) -> dict[str, LoadState]:
        """What function `name` reads that a failed load can leave degraded: the
        definitions for those that plan or run nodes, the policies for ingest."""
        [declaration] = chosen([name])
        parts = {"definitions": self.graphs.health()} if declaration.reads_graph else {}
        if declaration.decides_triggers:
            no_policies = LoadState(degraded=True, error="no policies loaded")
            parts["policies"] = self.policies.health() if self.policies else no_policies
        return parts

    async def missing(self, name: str) -> str | None:
        """What keeps function `name` from working now (None: ready): the database, or
        nothing in force of what it reads (a degraded one still serves)."""
        try:
            await self.database.query("RETURN 1;")
        except Exception as error:
            return f"database unreachable: {error}"
        return unready(self.loaded(name))

    async def stop(self) -> None:
        for sink in self.sinks:
            await sink.close()
        if self.secrets is not None:
            await self.secrets.stop()
        await self.database.close()
        await asyncio.to_thread(tracing.flush)  # the last spans, before the process goes
