"""Graph-wide problems (`consistency.py`, which knows node ids only) placed in the files.

A capability produced twice is one problem per producer, each at that node's `produces`
entry and naming the others with their places: whichever file the user just edited shows
up, wherever its clash lies. A cycle or a missing producer is placed at its first node.
"""

from __future__ import annotations

from pathlib import Path

from stratum.graph._locate import Locator
from stratum.graph.consistency import GraphProblem, graph_problems
from stratum.graph.model import ActionNode
from stratum.graph.problems import DefinitionProblem

GLOBAL_NAMES = "capability names are global: one producer per capability in all workflows"


def graph_wide_problems(
    nodes: dict[str, ActionNode], locate: Locator, complete: bool
) -> list[DefinitionProblem]:
    """Every `graph_problems` of `nodes`, located; a missing producer only when `complete`
    (while a file does not evaluate, the producer may well be declared in it)."""
    places = _Places(nodes, locate)
    problems = []
    for problem in graph_problems(nodes):
        if problem.kind == "missing-producer" and not complete:
            continue
        if problem.kind == "several-producers":
            problems += [places.producer(problem, node_id) for node_id in problem.nodes]
        else:
            problems.append(places.first_node(problem))
    return problems


class _Places:
    def __init__(self, nodes: dict[str, ActionNode], locate: Locator) -> None:
        self._nodes = nodes
        self._locate = locate

    def producer(self, problem: GraphProblem, node_id: str) -> DefinitionProblem:
        """At `node_id`'s `produces` entry, naming the other producers' entries."""
        capability = problem.capability or ""
        named = ", ".join(
            f"'{other}' here"
            if other == node_id
            else f"'{other}' at {self._at(other, capability).location}"
            for other in problem.nodes
        )
        message = f"capability '{capability}' has {len(problem.nodes)} producers: {named}"
        return self._at(node_id, capability).model_copy(
            update={"message": f"{message} ({GLOBAL_NAMES})"}
        )

    def first_node(self, problem: GraphProblem) -> DefinitionProblem:
        """At the first node's id; with the others' places when they are in other files."""
        message = problem.message
        located = [self._at(node_id) for node_id in problem.nodes]
        if len({place.file for place in located}) > 1:
            named = ", ".join(
                f"'{node_id}' at {place.location}"
                for node_id, place in zip(problem.nodes, located, strict=True)
            )
            message += f" ({named})"
        return located[0].model_copy(update={"message": message})

    def _at(self, node_id: str, produced: str | None = None) -> DefinitionProblem:
        """Where `node_id` is declared (at its `produces` entry of `produced`, if given),
        as a problem without a message yet."""
        file = self._nodes[node_id].source or Path(".")
        if produced is None:
            line, column = self._locate.value(file, "id", node_id)
        else:
            line, column = self._locate.entry(file, node_id, "produces", produced)
        return DefinitionProblem(file=file, line=line, column=column, message="")
