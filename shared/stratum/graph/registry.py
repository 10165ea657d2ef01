"""The graph in force, and every graph version runs were planned with.

New runs are planned with `current`; a run in flight keeps the version it was planned
with, which is stored in the DB and read back (and cached: a version never changes).
A reload that fails keeps the previous graph live and remembers the error, and since
when: the registry is degraded until a reload succeeds (`health`, `stratum.telemetry.health`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from stratum.errors import DefinitionError
from stratum.graph import ActionGraph, load_graph
from stratum.store import RunStore
from stratum.telemetry import metrics
from stratum.telemetry.health import LoadState, LoadTracker

log = logging.getLogger("stratum.graph")


class GraphRegistry:
    def __init__(self, definitions: Path, lib_dir: Path, store: RunStore) -> None:
        self.definitions = definitions
        self.lib_dir = lib_dir
        self._store = store
        self.current: ActionGraph | None = None
        self._load = LoadTracker(metrics.DEFINITIONS_DEGRADED, metrics.DEFINITIONS_LOADED)
        self._versions: dict[str, ActionGraph] = {}
        self._stored: set[str] = set()

    def reload(self, definitions: Path | None = None) -> bool:
        """Load the definitions (from `definitions` instead, which become the folder in
        force if they load); True if a new graph is now current."""
        try:
            graph = load_graph(definitions or self.definitions, self.lib_dir)
        except DefinitionError as error:
            self.refuse(str(error))
            return False
        if definitions is not None:
            self.definitions = definitions
        was_broken = self._load.succeeded()
        changed = self.current is None or graph.version != self.current.version
        self.current = graph
        self._versions[graph.version] = graph
        metrics.GRAPH_RELOADS.labels("ok").inc()
        metrics.GRAPH.info({"version": graph.version})
        if changed:
            log.info("graph loaded", extra={"version": graph.version, "nodes": len(graph.nodes)})
        elif was_broken:  # the broken change was undone: the same content, the same version
            log.info("graph valid again, unchanged", extra={"version": graph.version})
        return changed

    def refuse(self, error: str) -> None:
        """A change that cannot be loaded (broken definitions, a refused artifact): the
        previous graph stays live and `error` says why."""
        self._load.failed(error)
        metrics.GRAPH_RELOADS.labels("failed").inc()
        log.error("graph reload failed; keeping the previous graph", extra={"error": error})

    @property
    def error(self) -> str | None:
        """Why the last reload failed, while no reload has succeeded since."""
        return self._load.error

    def health(self) -> LoadState:
        """The graph in force, and whether (since when, why) a reload left it degraded."""
        return self._load.state(self.current.version if self.current else None)

    async def remember(self, graph: ActionGraph) -> None:
        """Store the graph snapshot so any instance can run a run planned with it."""
        if graph.version in self._stored:
            return
        if await self._store.get_graph(graph.version) is None:
            await self._store.save_graph(graph.version, snapshot(graph))
        self._stored.add(graph.version)

    async def version(self, version: str) -> ActionGraph:
        """The graph a run was planned with."""
        graph = self._versions.get(version)
        if graph is None:
            stored = await self._store.get_graph(version)
            if stored is None:
                raise DefinitionError(f"graph version {version} is not stored")
            graph = ActionGraph.model_validate(
                {key: value for key, value in stored.items() if key != "_id"}
            )
            self._versions[version] = graph
        return graph

    async def as_ran(
        self, version: str, executions: Mapping[str, Mapping[str, Any]]
    ) -> ActionGraph:
        """The run's graph (`version`) with each node that succeeded as the graph version
        it ran with (`node_exec.graph_version`): after a resume with new definitions, a
        node is undone by the compensate script it was declared with when it ran, even if
        the new definitions changed or dropped it."""
        graph = await self.version(version)
        nodes = dict(graph.nodes)
        for node, record in executions.items():
            ran_with = record.get("graph_version")
            if record.get("status") != "succeeded" or not ran_with or ran_with == version:
                continue
            old = await self.version(str(ran_with))
            if node in old.nodes:
                nodes[node] = old.nodes[node]
        if nodes == graph.nodes:
            return graph
        return graph.model_copy(update={"nodes": nodes})


def snapshot(graph: ActionGraph) -> dict[str, Any]:
    return graph.model_dump(mode="json")
