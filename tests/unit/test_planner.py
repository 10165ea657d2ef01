"""The planner over small hand-built graphs (pure: no Nickel, no files)."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from stratum.errors import PlanError
from stratum.graph import (
    ActionGraph,
    ActionNode,
    CapabilityEdge,
    capability_edges,
    graph_problems,
    plan,
)


def node(
    node_id: str,
    trigger: str | None = None,
    consumes: tuple[str, ...] = (),
    produces: tuple[str, ...] = (),
) -> ActionNode:
    return ActionNode(
        id=node_id,
        trigger=trigger,
        consumes=consumes,
        produces=produces,
        handler=Path(f"/defs/{node_id}.nu"),
    )


def graph(*nodes: ActionNode, version: str = "v1") -> ActionGraph:
    return ActionGraph(version=version, nodes={n.id: n for n in nodes}, schemas={})


def orders(nodes: list[ActionNode]) -> list[list[ActionNode]]:
    """Every insertion order for small graphs, a few rotations and the reverse otherwise."""
    if len(nodes) <= 5:
        return [list(order) for order in itertools.permutations(nodes)]
    return [nodes[i:] + nodes[:i] for i in range(len(nodes))] + [nodes[::-1]]


FMT = node("fmt-crate", "crate.push", produces=("formatted-code",))
LINT = node("lint-crate", "crate.push", produces=("linted-code",))
BUILD = node("build-crate", "crate.push", consumes=("formatted-code", "linted-code"))
SEED_STAGES = [["fmt-crate", "lint-crate"], ["build-crate"]]

PLANS = {
    "seed, all triggered": ([FMT, LINT, BUILD], "crate.push", SEED_STAGES),
    "seed, producers pulled in": (
        [
            node("fmt-crate", produces=("formatted-code",)),
            node("lint-crate", produces=("linted-code",)),
            BUILD,
        ],
        "crate.push",
        SEED_STAGES,
    ),
    "seed via wildcard triggers": (
        [
            node("fmt-crate", "crate.*", produces=("formatted-code",)),
            node("lint-crate", ">", produces=("linted-code",)),
            node("build-crate", "crate.>", consumes=("formatted-code", "linted-code")),
        ],
        "crate.push",
        SEED_STAGES,
    ),
    "only the build's producers, not the other crate.push consumers": (
        [FMT, LINT, BUILD, node("docs-site", "docs.push"), node("idle", consumes=("x",))],
        "crate.push",
        SEED_STAGES,
    ),
    "unrelated producer left out": (
        [
            node("fmt-crate", produces=("formatted-code",)),
            node("lint-crate", produces=("linted-code",)),
            node("bench-crate", produces=("bench-report",)),
            node("release", "release.cut", consumes=("formatted-code",)),
        ],
        "release.cut",
        [["fmt-crate"], ["release"]],
    ),
    "independent nodes tie-break lexically": (
        [node("zeta", "t"), node("alpha", "t"), node("mid", "t")],
        "t",
        [["alpha", "mid", "zeta"]],
    ),
    "diamond": (
        [
            node("d", "go", consumes=("b-out", "c-out")),
            node("c", consumes=("a-out",), produces=("c-out",)),
            node("b", consumes=("a-out",), produces=("b-out",)),
            node("a", produces=("a-out",)),
        ],
        "go",
        [["a"], ["b", "c"], ["d"]],
    ),
    "chain with a shortcut: a node waits for its latest producer": (
        [
            node("a", produces=("x",)),
            node("b", consumes=("x",), produces=("y",)),
            node("c", consumes=("y",), produces=("z",)),
            node("d", "go", consumes=("x", "z")),
        ],
        "go",
        [["a"], ["b"], ["c"], ["d"]],
    ),
    "triggered producer placed after its own producers": (
        [
            node("a", "go", produces=("x",)),
            node("b", "go", consumes=("x",), produces=("y",)),
            node("c", "go", consumes=("y",)),
            node("e", "go"),
        ],
        "go",
        [["a", "e"], ["b"], ["c"]],
    ),
    "a cycle elsewhere does not matter": (
        [
            node("a", "go"),
            node("p", consumes=("q-out",), produces=("p-out",)),
            node("q", consumes=("p-out",), produces=("q-out",)),
        ],
        "go",
        [["a"]],
    ),
    "longer chain across two triggered roots": (
        [
            node("n1", produces=("c1",)),
            node("n2", consumes=("c1",), produces=("c2",)),
            node("n3", consumes=("c2",), produces=("c3",)),
            node("n4", consumes=("c3",), produces=("c4",)),
            node("n5", "go", consumes=("c4",)),
            node("m1", "go", consumes=("c2",)),
        ],
        "go",
        [["n1"], ["n2"], ["m1", "n3"], ["n4"], ["n5"]],
    ),
}


@pytest.mark.parametrize(("nodes", "topic", "expected"), PLANS.values(), ids=PLANS.keys())
def test_stages(nodes: list[ActionNode], topic: str, expected: list[list[str]]) -> None:
    for order in orders(nodes):
        result = plan(graph(*order), topic)
        assert [list(stage) for stage in result.stages] == expected, [n.id for n in order]


def test_plan_carries_topic_and_graph_version() -> None:
    result = plan(graph(FMT, LINT, BUILD, version="abc123"), "crate.push")
    assert (result.topic, result.graph_version) == ("crate.push", "abc123")


ERRORS = {
    "no trigger matches": (
        [FMT, LINT, BUILD, node("untriggered", produces=("x",))],
        "x.y",
        "no node is triggered by topic 'x.y'",
    ),
    "missing producer": (
        [FMT, BUILD],
        "crate.push",
        "node 'build-crate' consumes 'linted-code', which no node produces",
    ),
    "missing producer of a pulled-in node": (
        [node("a", "go", consumes=("x",)), node("b", consumes=("y",), produces=("x",))],
        "go",
        "node 'b' consumes 'y', which no node produces",
    ),
    "two producers of a consumed capability": (
        [FMT, LINT, BUILD, node("fmt-again", produces=("formatted-code",))],
        "crate.push",
        "capability 'formatted-code' has 2 producers: 'fmt-again', 'fmt-crate'",
    ),
    "two planned producers of an unconsumed capability": (
        [node("a", "go", produces=("x",)), node("b", "go", produces=("x",))],
        "go",
        "capability 'x' has 2 producers: 'a', 'b'",
    ),
    "cycle": (
        [
            node("c", consumes=("b-out",), produces=("c-out",)),
            node("b", consumes=("a-out",), produces=("b-out",)),
            node("a", "go", consumes=("c-out",), produces=("a-out",)),
        ],
        "go",
        "cycle: a -> b -> c -> a",
    ),
    "cycle upstream of the triggered node": (
        [
            node("z", "go", consumes=("q-out",)),
            node("q", consumes=("p-out",), produces=("q-out",)),
            node("p", consumes=("q-out",), produces=("p-out",)),
        ],
        "go",
        "cycle: p -> q -> p",
    ),
    "node consuming its own product": (
        [node("a", "go", consumes=("x",), produces=("x",))],
        "go",
        "cycle: a -> a",
    ),
}


@pytest.mark.parametrize(("nodes", "topic", "message"), ERRORS.values(), ids=ERRORS.keys())
def test_errors(nodes: list[ActionNode], topic: str, message: str) -> None:
    for order in orders(nodes):
        with pytest.raises(PlanError) as caught:
            plan(graph(*order), topic)
        assert str(caught.value) == message


def test_capability_edges_of_the_seed() -> None:
    seed = graph(BUILD, LINT, FMT)
    assert capability_edges(seed, plan(seed, "crate.push")) == (
        CapabilityEdge("fmt-crate", "build-crate", "formatted-code"),
        CapabilityEdge("lint-crate", "build-crate", "linted-code"),
    )


def test_capability_edges_stay_inside_the_plan() -> None:
    whole = graph(
        node("a", produces=("x",)),
        node("b", "go", consumes=("x",), produces=("y",)),
        node("c", "other", consumes=("y", "x")),
    )
    assert capability_edges(whole, plan(whole, "go")) == (CapabilityEdge("a", "b", "x"),)
    assert capability_edges(whole, plan(whole, "other")) == (
        CapabilityEdge("a", "b", "x"),
        CapabilityEdge("a", "c", "x"),
        CapabilityEdge("b", "c", "y"),
    )


def test_capability_edges_refuse_a_plan_from_another_graph_version() -> None:
    old = graph(FMT, LINT, BUILD, version="old")
    new = graph(FMT, LINT, BUILD, version="new")
    with pytest.raises(PlanError, match="old"):
        capability_edges(new, plan(old, "crate.push"))


def test_graph_problems_of_a_consistent_graph() -> None:
    assert graph_problems(graph(FMT, LINT, BUILD).nodes) == []


def test_graph_problems_find_everything() -> None:
    nodes = [
        FMT,
        BUILD,  # linted-code: no producer
        node("fmt-again", produces=("formatted-code",)),
        node("p", consumes=("q-out",), produces=("p-out",)),
        node("q", consumes=("p-out",), produces=("q-out",)),
        node("s", consumes=("s-out",), produces=("s-out",)),
        # nobody consumes `report`: two producers are refused all the same
        node("report-b", "crate.push", produces=("report",)),
        node("report-a", "other.topic", produces=("report",)),
    ]
    for order in orders(nodes)[:40]:
        found = graph_problems(graph(*order).nodes)
        assert [(p.kind, p.message, p.nodes) for p in found] == [
            (
                "missing-producer",
                "node 'build-crate' consumes 'linted-code', which no node produces",
                ("build-crate",),
            ),
            (
                "several-producers",
                "capability 'formatted-code' has 2 producers: 'fmt-again', 'fmt-crate'",
                ("fmt-again", "fmt-crate"),
            ),
            (
                "several-producers",
                "capability 'report' has 2 producers: 'report-a', 'report-b'",
                ("report-a", "report-b"),
            ),
            ("cycle", "cycle: p -> q -> p", ("p", "q")),
            ("cycle", "cycle: s -> s", ("s",)),
        ]
