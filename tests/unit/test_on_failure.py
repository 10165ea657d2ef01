"""`on_failure` ("compensate" or "hold") is read from real Nickel files: a node's own value,
else its file's, else "compensate"; Nickel refuses any other value at its place; the graph
version and the stored snapshot a run is pinned to both carry it."""

from __future__ import annotations

from pathlib import Path

import pytest

from stratum.errors import DefinitionError
from stratum.graph import ActionGraph, check_definitions, load_graph
from stratum.graph.registry import GraphRegistry
from stratum.store import Database, RunStore
from tests.conftest import ROOT

LIB = ROOT / "nickel" / "lib"


def node(node_id: str, extra: str = "") -> str:
    return f'{{ id = "{node_id}", trigger = "x.y", handler = "run.nu"{extra} }}'


def definitions(folder: Path, *nodes: str, top: str = "") -> Path:
    """A definitions folder holding one workflow file `flow.ncl` of `nodes` (and `top`
    fields before them), beside the script they all run."""
    folder.mkdir(exist_ok=True)
    (folder / "run.nu").write_text("def main [] { {} }\n")
    body = "".join(f"    {n},\n" for n in nodes)
    (folder / "flow.ncl").write_text(f"{{\n{top}  nodes = [\n{body}  ],\n}}\n")
    return folder


def on_failure(folder: Path) -> dict[str, str]:
    return {n.id: n.on_failure for n in load_graph(folder, LIB).nodes.values()}


def test_a_node_compensates_unless_told_otherwise(tmp_path: Path) -> None:
    assert on_failure(definitions(tmp_path, node("a"), node("b"))) == {
        "a": "compensate",
        "b": "compensate",
    }


def test_the_files_value_applies_to_its_nodes_alone(tmp_path: Path) -> None:
    folder = definitions(tmp_path, node("a"), node("b"), top='  on_failure = "hold",\n')
    (folder / "other.ncl").write_text(f"{{ nodes = [ {node('c')} ] }}\n")
    assert on_failure(folder) == {"a": "hold", "b": "hold", "c": "compensate"}


def test_a_nodes_own_value_wins_over_the_files(tmp_path: Path) -> None:
    held = definitions(
        tmp_path / "held",
        node("a"),
        node("b", ", on_failure = 'compensate"),  # a tag works as well as a string
        top="  on_failure = 'hold,\n",
    )
    assert on_failure(held) == {"a": "hold", "b": "compensate"}
    plain = definitions(tmp_path / "plain", node("a"), node("b", ', on_failure = "hold"'))
    assert on_failure(plain) == {"a": "compensate", "b": "hold"}


@pytest.mark.parametrize(
    ("nodes", "top"),
    [
        ((node("a"), node("b", ', on_failure = "pause"')), ""),
        ((node("a"),), '  on_failure = "pause",\n'),
    ],
    ids=["node", "file"],
)
def test_any_other_value_is_refused_at_its_place(
    tmp_path: Path, nodes: tuple[str, ...], top: str
) -> None:
    folder = definitions(tmp_path, *nodes, top=top)
    file = folder / "flow.ncl"
    text = file.read_text()
    start = text.index('"pause"')
    line, column = text.count("\n", 0, start) + 1, start - text.rfind("\n", 0, start)
    [problem] = check_definitions(folder, LIB)
    assert (problem.file, problem.line, problem.column) == (file, line, column)
    assert "`on_failure`" in problem.message
    with pytest.raises(DefinitionError, match=rf"flow\.ncl:{line}:{column}: .*`on_failure`"):
        load_graph(folder, LIB)


def test_the_version_changes_with_on_failure_alone(tmp_path: Path) -> None:
    folder = definitions(tmp_path, node("a"), node("b", ', on_failure = "compensate"'))
    before = load_graph(folder, LIB)
    flow = folder / "flow.ncl"
    flow.write_text(flow.read_text().replace('"compensate"', '"hold"'))
    after = load_graph(folder, LIB)
    assert after.nodes["b"].on_failure == "hold"
    assert after.version != before.version


async def test_the_stored_snapshot_keeps_on_failure(tmp_path: Path) -> None:
    """A run is executed with the graph version it was planned with, read back from the
    store by any instance: a held node must still be held there."""
    folder = definitions(tmp_path, node("a"), node("b", ', on_failure = "hold"'))
    database = await Database.open("mem://", namespace="t", database="t", durable_writes=False)
    try:
        store = RunStore(database)
        await store.ensure_schema()
        planned_with = GraphRegistry(folder, LIB, store)
        assert planned_with.reload()
        graph = planned_with.current
        assert isinstance(graph, ActionGraph)
        await planned_with.remember(graph)
        # another instance: nothing cached, so the graph comes from the stored snapshot
        read_back = await GraphRegistry(folder, LIB, store).version(graph.version)
    finally:
        await database.close()
    assert read_back is not graph
    assert read_back == graph
    assert {n.id: n.on_failure for n in read_back.nodes.values()} == {
        "a": "compensate",
        "b": "hold",
    }
