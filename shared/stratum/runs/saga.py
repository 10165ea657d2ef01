"""What a failed run's saga undoes, decided in one place: the planner asks whether there is
anything to undo (nothing: the run ends Failed, no saga), the compensator undoes it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stratum.graph import ActionGraph


def undo_order(executions: Mapping[str, Mapping[str, Any]]) -> list[tuple[int, str]]:
    """(stage, node) of every node that succeeded: later stages first, and inside a stage
    reverse lexical order (the mirror of the order the plan lists them in)."""
    done = [
        (int(record["stage"]), node)
        for node, record in executions.items()
        if record.get("status") == "succeeded"
    ]
    return sorted(done, reverse=True)


def undoable(executions: Mapping[str, Mapping[str, Any]], graph: ActionGraph) -> list[str]:
    """The succeeded nodes that declare a compensate script, in undo order: what a saga
    would actually run. Empty means nothing to undo — nothing succeeded, or only nodes
    without a compensate script (they cannot be undone; when a saga runs for others they
    are recorded `skipped`)."""
    return [
        node
        for _, node in undo_order(executions)
        if node in graph.nodes and graph.nodes[node].compensate is not None
    ]
