"""From a topic to an ordered plan: which nodes run, in which stages.

Pure: no I/O, no clock. The triggered nodes plus, transitively, the producers of what they
consume are sorted into stages (Kahn by levels: a node runs in the first stage after all
its producers; inside a stage ids are lexical), so the same graph and topic always give the
same plan, whatever the order nodes were declared in.
"""

from __future__ import annotations

import heapq
from typing import NamedTuple

from stratum.errors import PlanError
from stratum.graph._dependencies import cycles, describe_cycle, producers_by_capability, successors
from stratum.graph.consistency import missing_producer, several_producers
from stratum.graph.model import ActionGraph, ActionNode, Plan
from stratum.graph.triggers import matches


class CapabilityEdge(NamedTuple):
    """`producer` hands `capability` to `consumer` inside one plan."""

    producer: str
    consumer: str
    capability: str


def plan(graph: ActionGraph, topic: str) -> Plan:
    """The stages to run for an event on `topic`.

    Raises PlanError, and returns no partial plan, when nothing is triggered, a consumed
    capability has no producer or several, two planned nodes produce the same capability,
    or the planned nodes form a cycle.
    """
    triggered = sorted(
        node.id
        for node in graph.nodes.values()
        if node.trigger is not None and matches(node.trigger, topic)
    )
    if not triggered:
        raise PlanError(f"no node is triggered by topic '{topic}'")
    needed = _with_producers(graph.nodes, triggered)
    _check_single_producers(needed)
    return Plan(topic=topic, graph_version=graph.version, stages=_stages(needed))


def capability_edges(graph: ActionGraph, plan: Plan) -> tuple[CapabilityEdge, ...]:
    """Every (producer, consumer, capability) hand-over inside `plan`, sorted."""
    if plan.graph_version != graph.version:
        raise PlanError(
            f"plan for '{plan.topic}' was made from graph {plan.graph_version}, not {graph.version}"
        )
    planned: dict[str, ActionNode] = {}
    for node_id in (node_id for stage in plan.stages for node_id in stage):
        if node_id not in graph.nodes:
            raise PlanError(f"plan for '{plan.topic}' names unknown node '{node_id}'")
        planned[node_id] = graph.nodes[node_id]
    producers = producers_by_capability(planned.values())
    return tuple(
        sorted(
            CapabilityEdge(producer, consumer.id, capability)
            for consumer in planned.values()
            for capability in set(consumer.consumes)
            for producer in producers.get(capability, ())
        )
    )


def _with_producers(nodes: dict[str, ActionNode], triggered: list[str]) -> dict[str, ActionNode]:
    """The triggered nodes and, transitively, the one producer of each consumed capability.

    Visits ids in lexical order so that, of several errors, the same one is always raised.
    """
    producers = producers_by_capability(nodes.values())
    needed: dict[str, ActionNode] = {}
    pending = list(triggered)
    heapq.heapify(pending)
    while pending:
        node_id = heapq.heappop(pending)
        if node_id in needed:
            continue
        node = needed[node_id] = nodes[node_id]
        for capability in sorted(set(node.consumes)):
            found = producers.get(capability, [])
            if not found:
                raise PlanError(missing_producer(node_id, capability))
            if len(found) > 1:
                raise PlanError(several_producers(capability, found))
            heapq.heappush(pending, found[0])
    return needed


def _check_single_producers(needed: dict[str, ActionNode]) -> None:
    """Two planned nodes must not produce the same capability, even one nobody consumes:
    a run keeps one value per capability."""
    for capability, found in producers_by_capability(needed.values()).items():
        if len(found) > 1:
            raise PlanError(several_producers(capability, found))


def _stages(needed: dict[str, ActionNode]) -> tuple[tuple[str, ...], ...]:
    edges = successors(needed)
    waiting_on = dict.fromkeys(edges, 0)
    for targets in edges.values():
        for target in targets:
            waiting_on[target] += 1
    stages: list[tuple[str, ...]] = []
    ready = sorted(node_id for node_id, count in waiting_on.items() if count == 0)
    while ready:
        stages.append(tuple(ready))
        unblocked = set()
        for node_id in ready:
            for target in edges[node_id]:
                waiting_on[target] -= 1
                if waiting_on[target] == 0:
                    unblocked.add(target)
        ready = sorted(unblocked)
    if sum(len(stage) for stage in stages) < len(needed):
        raise PlanError(describe_cycle(cycles(edges)[0]))
    return tuple(stages)
