"""How `stratum plan` marks a plan made from definitions with problems (pure: no files)."""

from __future__ import annotations

from pathlib import Path

from stratum.graph import ActionGraph, ActionNode, DefinitionProblem, PartialGraph
from stratum_host.cli.plan import disk_body, not_authoritative, partial_note

NODE = ActionNode(id="fmt", trigger="crate.push", handler=Path("/defs/fmt.nu"))
GRAPH = ActionGraph(version="abc", nodes={"fmt": NODE}, schemas={})
SYNTAX = DefinitionProblem(file=Path("/defs/b.ncl"), line=3, column=5, message="unexpected token")
TWICE = DefinitionProblem(file=Path("/defs/a.ncl"), line=2, column=9, message="2 producers")


def test_a_clean_graph_is_unmarked_and_versioned() -> None:
    clean = PartialGraph(graph=GRAPH, problems=(), left_out=())
    assert partial_note(clean) == ""
    body = disk_body(clean, "crate.push", [["fmt"]])
    assert (body["graph_version"], body["complete"], body["problems"]) == ("abc", True, [])


def test_left_out_files_mark_the_plan_as_from_the_files_that_load() -> None:
    loaded = PartialGraph(graph=GRAPH, problems=(SYNTAX, TWICE), left_out=(SYNTAX.file,))
    assert partial_note(loaded) == "from the files that load; 2 file(s) broken"
    warning = not_authoritative(loaded, "crate.push")
    assert warning.startswith("this plan is not authoritative: it is from the files that load")
    assert "left out, so without their nodes: /defs/b.ncl." in warning
    assert "`stratum plan crate.push --live`" in warning
    body = disk_body(loaded, "crate.push", [["fmt"]])
    assert (body["graph_version"], body["complete"]) == (None, False)
    assert body["broken_files"] == ["/defs/a.ncl", "/defs/b.ncl"]
    assert body["left_out"] == ["/defs/b.ncl"]
    assert body["problems"][0] == {
        "file": "/defs/b.ncl",
        "line": 3,
        "column": 5,
        "message": "unexpected token",
    }


def test_problems_in_files_that_all_load_are_named_so() -> None:
    loaded = PartialGraph(graph=GRAPH, problems=(TWICE, TWICE), left_out=())
    assert partial_note(loaded) == "from definitions with 2 problem(s) in 1 file(s)"
    assert "left out" not in not_authoritative(loaded, "crate.push")
