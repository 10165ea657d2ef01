"""The action graph: load it from Nickel, check it, and plan a topic's stages.

`load_graph` / `check_definitions` / `load_partial` do the I/O; `plan`, `matches`,
`capability_edges` and `graph_problems` are pure and work on any `ActionGraph`, hand-built
ones included.
"""

from stratum.graph.consistency import GraphProblem, graph_problems
from stratum.graph.loader import PartialGraph, check_definitions, load_graph, load_partial
from stratum.graph.model import ActionGraph, ActionNode, Plan, RetryPolicy, SecretRef
from stratum.graph.planner import CapabilityEdge, capability_edges, plan
from stratum.graph.problems import DefinitionProblem
from stratum.graph.triggers import matches

__all__ = [
    "ActionGraph",
    "ActionNode",
    "CapabilityEdge",
    "DefinitionProblem",
    "GraphProblem",
    "PartialGraph",
    "Plan",
    "RetryPolicy",
    "SecretRef",
    "capability_edges",
    "check_definitions",
    "graph_problems",
    "load_graph",
    "load_partial",
    "matches",
    "plan",
]
