"""Who produces which capability, and the cycles in the producer -> consumer graph.

Pure helpers shared by the planner (one topic's subgraph) and the graph-wide check, so both
name problems the same way. Every result is sorted, so dict and file order never show.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping

from stratum.graph.model import ActionNode

Successors = dict[str, list[str]]


def producers_by_capability(nodes: Iterable[ActionNode]) -> dict[str, list[str]]:
    """Capability -> sorted ids of the nodes that produce it."""
    index: dict[str, set[str]] = {}
    for node in nodes:
        for capability in node.produces:
            index.setdefault(capability, set()).add(node.id)
    return {capability: sorted(ids) for capability, ids in sorted(index.items())}


def successors(nodes: Mapping[str, ActionNode]) -> Successors:
    """Node id -> sorted ids of the nodes (within `nodes`) that consume what it produces."""
    producers = producers_by_capability(nodes.values())
    edges: dict[str, set[str]] = {node_id: set() for node_id in nodes}
    for consumer in nodes.values():
        for capability in consumer.consumes:
            for producer in producers.get(capability, ()):
                edges[producer].add(consumer.id)
    return {node_id: sorted(targets) for node_id, targets in sorted(edges.items())}


def cycles(edges: Successors) -> list[list[str]]:
    """One cycle per strongly connected component that has one, each starting at the
    component's lexically smallest id; the cycles are sorted by that id."""
    found = []
    for component in _components(edges):
        members = set(component)
        start = component[0]
        if len(component) > 1 or start in edges[start]:
            found.append(_cycle_through(start, edges, members))
    return sorted(found)


def describe_cycle(cycle: list[str]) -> str:
    """`cycle: a -> b -> c -> a`."""
    return "cycle: " + " -> ".join([*cycle, cycle[0]])


def _components(edges: Successors) -> list[list[str]]:
    """Tarjan's strongly connected components, iteratively (no recursion limit)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(edges[root]))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, pending = work[-1]
            descended = False
            for target in pending:
                if target not in index:
                    index[target] = low[target] = len(index)
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(edges[target])))
                    descended = True
                    break
                if target in on_stack:
                    low[node] = min(low[node], index[target])
            if descended:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(sorted(component))
    return components


def _cycle_through(start: str, edges: Successors, members: set[str]) -> list[str]:
    """The shortest cycle from `start` back to itself inside one component (breadth-first,
    successors in lexical order, so the answer is deterministic)."""
    parent: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for target in edges[node]:
            if target == start:
                path = [node]
                while path[-1] != start:
                    path.append(parent[path[-1]])
                return path[::-1]
            if target in members and target not in parent:
                parent[target] = node
                queue.append(target)
    raise AssertionError(f"{start} is on no cycle")  # callers only pass cyclic components
