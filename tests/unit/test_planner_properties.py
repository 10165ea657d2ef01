"""Properties of the planner over random graphs (hypothesis; pure: no Nickel, no files).

Random DAGs of action nodes, where node i produces `c<i>` and consumes capabilities of
lower-numbered nodes, so the graph is acyclic by construction; `cyclic` graphs add one
back edge (or a self-loop) on a triggered node. Ids are random so that lexical order and
dependency order are unrelated. `tangled` graphs are anything at all (shared, missing,
cyclic capabilities), to show the graph-wide check refuses whatever the planner refuses.
Derandomized: CI runs the same examples every time.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stratum.errors import PlanError
from stratum.graph import ActionGraph, ActionNode, graph_problems, plan

TOPIC = "crate.push"
PROPERTIES = settings(derandomize=True, max_examples=150, deadline=None)


@dataclass(frozen=True)
class Case:
    nodes: list[ActionNode]

    def graph(self, order: list[int] | None = None) -> ActionGraph:
        picked = [self.nodes[i] for i in order] if order else self.nodes
        return ActionGraph(version="v1", nodes={n.id: n for n in picked}, schemas={})

    @property
    def by_id(self) -> dict[str, ActionNode]:
        return {n.id: n for n in self.nodes}


def producers_of(nodes: dict[str, ActionNode], node: ActionNode) -> set[str]:
    return {other.id for other in nodes.values() if set(other.produces).intersection(node.consumes)}


@st.composite
def graphs(draw: st.DrawFn, *, cyclic: bool = False) -> Case:
    size = draw(st.integers(min_value=1, max_value=12))
    ids = draw(
        st.lists(
            st.text(alphabet="abcdefghij", min_size=1, max_size=3),
            min_size=size,
            max_size=size,
            unique=True,
        )
    )
    consumes = [
        set(draw(st.sets(st.integers(0, i - 1), max_size=3))) if i else set() for i in range(size)
    ]
    triggered = draw(st.sets(st.integers(0, size - 1), min_size=1))
    if cyclic:
        low = draw(st.integers(0, size - 1))
        high = draw(st.integers(low, size - 1))
        consumes[low].add(high)  # back edge high -> low (a self-loop when equal) ...
        consumes[high].add(low)  # ... closed by low -> high
        triggered.add(draw(st.sampled_from([low, high])))
    nodes = [
        ActionNode(
            id=ids[i],
            trigger=TOPIC if i in triggered else draw(st.sampled_from([None, "other.topic"])),
            consumes=tuple(draw(st.permutations(sorted(f"c{j}" for j in consumes[i])))),
            produces=(f"c{i}",),
            handler=Path(f"/defs/{ids[i]}.nu"),
        )
        for i in range(size)
    ]
    return Case(nodes)


def expected_stages(case: Case) -> tuple[tuple[str, ...], ...]:
    """A slow, obvious model: the triggered nodes and their producers, transitively; a
    node's stage is one after its latest producer's."""
    nodes = case.by_id
    needed = {n.id for n in case.nodes if n.trigger == TOPIC}
    pending = list(needed)
    while pending:
        for producer in producers_of(nodes, nodes[pending.pop()]):
            if producer not in needed:
                needed.add(producer)
                pending.append(producer)
    level: dict[str, int] = {}

    def depth(node_id: str) -> int:
        if node_id not in level:
            level[node_id] = 1 + max(
                (depth(p) for p in producers_of(nodes, nodes[node_id])), default=-1
            )
        return level[node_id]

    for node_id in needed:
        depth(node_id)
    return tuple(
        tuple(sorted(i for i in needed if level[i] == stage))
        for stage in range(max(level.values()) + 1)
    )


@PROPERTIES
@given(graphs())
def test_every_dependency_runs_in_an_earlier_stage(case: Case) -> None:
    result = plan(case.graph(), TOPIC)
    nodes = case.by_id
    stage_of: dict[str, int] = {}
    for index, stage in enumerate(result.stages):
        assert stage and list(stage) == sorted(stage)
        for node_id in stage:
            assert node_id not in stage_of, f"{node_id} planned twice"
            stage_of[node_id] = index
    for node_id, index in stage_of.items():
        for producer in producers_of(nodes, nodes[node_id]):
            assert producer in stage_of, f"{node_id} planned without its producer {producer}"
            assert stage_of[producer] < index
    triggered = {n.id for n in case.nodes if n.trigger == TOPIC}
    assert triggered <= stage_of.keys()
    assert result.stages == expected_stages(case)


@PROPERTIES
@given(graphs(), st.data())
def test_plan_does_not_depend_on_declaration_order(case: Case, data: st.DataObject) -> None:
    order = data.draw(st.permutations(range(len(case.nodes))))
    assert plan(case.graph(list(order)), TOPIC) == plan(case.graph(), TOPIC)


@PROPERTIES
@given(graphs(cyclic=True), st.data())
def test_cycles_are_rejected_naming_a_real_cycle(case: Case, data: st.DataObject) -> None:
    with pytest.raises(PlanError) as caught:
        plan(case.graph(), TOPIC)
    message = str(caught.value)
    assert message.startswith("cycle: "), message
    names = message.removeprefix("cycle: ").split(" -> ")
    assert len(names) >= 2 and names[0] == names[-1]
    assert len(set(names[:-1])) == len(names) - 1, "a simple cycle, each node once"
    nodes = case.by_id
    for producer, consumer in itertools.pairwise(names):
        assert producer in producers_of(nodes, nodes[consumer]), (producer, consumer)

    order = data.draw(st.permutations(range(len(case.nodes))))
    with pytest.raises(PlanError) as again:
        plan(case.graph(list(order)), TOPIC)
    assert str(again.value) == message


@st.composite
def tangled(draw: st.DrawFn) -> Case:
    """Any graph over a few capabilities and topics: producers may be missing or doubled
    (consumed or not), and consumers may loop back."""
    capabilities = st.sets(st.sampled_from(["k0", "k1", "k2", "k3"]), max_size=2)
    size = draw(st.integers(min_value=1, max_value=7))
    ids = draw(st.lists(st.text(alphabet="abcdef", min_size=1, max_size=2), min_size=size,
                        max_size=size, unique=True))  # fmt: skip
    return Case(
        [
            ActionNode(
                id=node_id,
                trigger=draw(st.sampled_from([None, TOPIC, "other.topic"])),
                consumes=tuple(sorted(draw(capabilities))),
                produces=tuple(sorted(draw(capabilities))),
                handler=Path(f"/defs/{node_id}.nu"),
            )
            for node_id in ids
        ]
    )


@PROPERTIES
@given(tangled())
def test_whatever_the_planner_refuses_the_graph_wide_check_refuses(case: Case) -> None:
    """A graph `stratum check` passes plans every topic it triggers; a refusal the check
    missed would fail every run of that topic at planning."""
    problems = graph_problems(case.by_id)
    for topic in (TOPIC, "other.topic"):
        try:
            plan(case.graph(), topic)
        except PlanError as error:
            if str(error).startswith("no node is triggered"):
                continue  # a topic nothing listens to: no fault of the graph
            assert problems, f"plan({topic!r}) refuses ({error}), the graph-wide check passes"
            assert refusal_kind(str(error)) in {p.kind for p in problems}, (error, problems)


def refusal_kind(message: str) -> str:
    """The kind of graph problem a planner refusal is (the planner's wording)."""
    if message.startswith("cycle: "):
        return "cycle"
    if message.endswith("which no node produces"):
        return "missing-producer"
    assert " producers: " in message, message
    return "several-producers"
