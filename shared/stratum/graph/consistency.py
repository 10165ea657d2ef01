"""Graph-wide consistency: every consumed capability has exactly one producer and the
producer -> consumer graph is acyclic.

The planner checks the same rules on one topic's subgraph; this check runs over the whole
graph so `stratum check` and the loader report problems before any event arrives.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict

from stratum.graph._dependencies import cycles, describe_cycle, producers_by_capability, successors
from stratum.graph.model import ActionNode


class GraphProblem(BaseModel):
    """One inconsistency, with the nodes involved (the loader turns them into places)."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["missing-producer", "several-producers", "cycle"]
    message: str
    nodes: tuple[str, ...]


def missing_producer(consumer: str, capability: str) -> str:
    return f"node '{consumer}' consumes '{capability}', which no node produces"


def several_producers(capability: str, producers: list[str]) -> str:
    names = ", ".join(f"'{producer}'" for producer in producers)
    return f"capability '{capability}' has {len(producers)} producers: {names}"


def graph_problems(nodes: Mapping[str, ActionNode]) -> list[GraphProblem]:
    """Every missing or duplicated producer of a consumed capability, and one cycle per
    strongly connected component, in a deterministic order."""
    producers = producers_by_capability(nodes.values())
    problems: list[GraphProblem] = []
    consumed: dict[str, list[str]] = {}
    for consumer in sorted(nodes):
        for capability in sorted(set(nodes[consumer].consumes)):
            consumed.setdefault(capability, []).append(consumer)
            if capability not in producers:
                problems.append(
                    GraphProblem(
                        kind="missing-producer",
                        message=missing_producer(consumer, capability),
                        nodes=(consumer,),
                    )
                )
    for capability in sorted(consumed):
        found = producers.get(capability, [])
        if len(found) > 1:
            problems.append(
                GraphProblem(
                    kind="several-producers",
                    message=several_producers(capability, found),
                    nodes=tuple(found),
                )
            )
    for cycle in cycles(successors(nodes)):
        problems.append(
            GraphProblem(kind="cycle", message=describe_cycle(cycle), nodes=tuple(cycle))
        )
    return problems
