"""Graph-wide consistency: every consumed capability has a producer, no capability has two
(capability names are global across workflows, consumed or not), and the producer ->
consumer graph is acyclic.

The planner refuses a topic for these same reasons on its subgraph; this check runs over
the whole graph, so whatever the planner would refuse for some topic, `stratum check` and
the loader refuse first, before any event arrives.
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
    # the capability missing or produced twice (None for a cycle)
    capability: str | None = None


def missing_producer(consumer: str, capability: str) -> str:
    return f"node '{consumer}' consumes '{capability}', which no node produces"


def several_producers(capability: str, producers: list[str]) -> str:
    names = ", ".join(f"'{producer}'" for producer in producers)
    return f"capability '{capability}' has {len(producers)} producers: {names}"


def graph_problems(nodes: Mapping[str, ActionNode]) -> list[GraphProblem]:
    """Every consumed capability without a producer, every capability (consumed or not)
    with several, and one cycle per strongly connected component, in a deterministic order.

    Two producers of an unconsumed capability are refused too: the planner refuses them as
    soon as one topic plans both, and a run keeps one value per capability.
    """
    producers = producers_by_capability(nodes.values())
    problems: list[GraphProblem] = []
    for consumer in sorted(nodes):
        for capability in sorted(set(nodes[consumer].consumes)):
            if capability not in producers:
                problems.append(
                    GraphProblem(
                        kind="missing-producer",
                        message=missing_producer(consumer, capability),
                        nodes=(consumer,),
                        capability=capability,
                    )
                )
    for capability, found in producers.items():  # sorted by capability
        if len(found) > 1:
            problems.append(
                GraphProblem(
                    kind="several-producers",
                    message=several_producers(capability, found),
                    nodes=tuple(found),
                    capability=capability,
                )
            )
    for cycle in cycles(successors(nodes)):
        problems.append(
            GraphProblem(kind="cycle", message=describe_cycle(cycle), nodes=tuple(cycle))
        )
    return problems
