"""Loading and checking real Nickel definitions (py-nickel) from fixture folders."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

import stratum.graph
from stratum.errors import DefinitionError, PlanError
from stratum.graph import (
    DefinitionProblem,
    RetryPolicy,
    check_definitions,
    load_graph,
    load_partial,
    plan,
)

ROOT = Path(__file__).resolve().parents[2]
LIB = ROOT / "nickel" / "lib"
FIXTURES = ROOT / "tests" / "fixtures" / "graphs"


def position(file: Path, needle: str) -> tuple[int, int]:
    """1-based line and column of the first `needle` in `file` (so fixtures can move)."""
    text = file.read_text()
    start = text.index(needle)
    return text.count("\n", 0, start) + 1, start - (text.rfind("\n", 0, start) + 1) + 1


def load_error(folder: str) -> str:
    with pytest.raises(DefinitionError) as caught:
        load_graph(FIXTURES / folder, LIB)
    message = str(caught.value)
    assert "\x1b" not in message
    assert "Traceback" not in message
    assert "python:1:1" not in message
    return message


def located(file: Path, needle: str) -> str:
    line, column = position(file, needle)
    return f"{file.name}:{line}:{column}: "


def test_good_graph_loads() -> None:
    graph = load_graph(FIXTURES / "good", LIB)
    crate = FIXTURES / "good" / "crate"
    assert sorted(graph.nodes) == ["build-crate", "fmt-crate", "lint-crate", "publish-crate"]
    fmt = graph.nodes["fmt-crate"]
    assert fmt.handler == crate / "fmt.nu"
    assert fmt.compensate == crate / "unfmt.nu"
    assert fmt.source == crate / "crate.ncl"
    assert (fmt.trigger, fmt.produces, fmt.timeout) == ("crate.push", ("formatted-code",), 30)
    assert graph.nodes["lint-crate"].timeout == 120
    build = graph.nodes["build-crate"]
    assert build.consumes == ("formatted-code", "linted-code")
    assert build.retries == RetryPolicy(max=2, backoff=1, factor=2)
    publish = graph.nodes["publish-crate"]
    assert publish.handler == FIXTURES / "good" / "scripts" / "publish.nu"
    assert publish.compensate is None
    assert graph.schemas["built-artifact"] == {
        "type": "object",
        "properties": {"path": {"type": "string"}, "size": {"type": "integer"}},
        "required": ["path", "size"],
        "additionalProperties": False,
    }
    assert re.fullmatch(r"[0-9a-f]{16}", graph.version)
    assert check_definitions(FIXTURES / "good", LIB) == []


def test_good_graph_plans() -> None:
    graph = load_graph(FIXTURES / "good", LIB)
    seed = [["fmt-crate", "lint-crate"], ["build-crate"]]
    assert [list(s) for s in plan(graph, "crate.push").stages] == seed
    assert [list(s) for s in plan(graph, "release.v1.0").stages] == [*seed, ["publish-crate"]]


def test_syntax_error_names_file_line_and_column() -> None:
    file = FIXTURES / "syntax" / "broken.ncl"
    first = load_error("syntax").splitlines()[0]
    line, column = position(file, "],")
    assert first.endswith(f"{file.name}:{line}:{column}: unexpected token")
    assert [(p.file, p.line, p.column) for p in check_definitions(file.parent, LIB)] == [
        (file, line, column)
    ]


def test_contract_violation_names_the_field_even_without_the_contract_in_the_file() -> None:
    file = FIXTURES / "contract" / "crate.ncl"
    assert "Workflow" not in file.read_text()
    message = load_error("contract")
    first, *snippet = message.splitlines()
    assert first.endswith(
        located(file, "-1")
        + "contract broken by the value of `timeout`: must be a number greater than 0"
    )
    assert any("timeout = -1" in line for line in snippet)
    assert str(LIB) not in message  # the library's side of the contract is noise here


def test_missing_script_names_node_field_and_path() -> None:
    file = FIXTURES / "missing-script" / "crate.ncl"
    message = load_error("missing-script")
    assert len(message.splitlines()) == 1  # one problem, and Nickel had no snippet for it
    assert located(file, '"scripts/undo-lint.nu"') in message
    assert "node 'lint-crate': `compensate` script 'scripts/undo-lint.nu' does not exist" in message
    assert str(file.parent / "scripts" / "undo-lint.nu") in message


def test_duplicate_id_names_both_files() -> None:
    folder = FIXTURES / "duplicate-id"
    message = load_error("duplicate-id")
    assert located(folder / "b.ncl", '"fmt-crate"') in message
    line, column = position(folder / "a.ncl", '"fmt-crate"')
    assert "duplicate node id 'fmt-crate': already declared in " in message
    assert f"a.ncl:{line}:{column}" in message


def test_cycle_and_missing_producer_over_the_whole_graph() -> None:
    folder = FIXTURES / "cycle"
    problems = check_definitions(folder, LIB)
    assert [(p.file.name, p.message) for p in problems] == [
        ("orphan.ncl", "node 'orphan' consumes 'nothing', which no node produces"),
        ("cycle.ncl", "cycle: alpha -> beta -> gamma -> alpha"),
    ]
    assert (problems[1].line, problems[1].column) == position(folder / "cycle.ncl", '"alpha"')
    assert "cycle: alpha -> beta -> gamma -> alpha" in load_error("cycle")


def place(file: Path, needle: str) -> str:
    """`file:line:column` of `needle` (relative, as the messages show it: cwd is the repo)."""
    line, column = position(file, needle)
    return f"{file.relative_to(ROOT)}:{line}:{column}"


def test_two_producers_of_an_unconsumed_capability_are_refused_at_each_producer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The planner would refuse crate.push (both producers are triggered by it): so must
    the check, once per producer, each at its `produces` entry and naming the other's."""
    monkeypatch.chdir(ROOT)
    folder = FIXTURES / "two-producers"
    report, digest = folder / "report.ncl", folder / "digest.ncl"
    problems = check_definitions(folder, LIB)
    at_digest = place(digest, '"summary"]')  # the node's id is written after its produces
    at_report = place(report, '"summary"]')
    assert [str(p) for p in problems] == [
        f"{at_digest}: capability 'summary' has 2 producers: 'digest' here, "
        f"'report' at {at_report} (capability names are global: one producer per "
        "capability in all workflows)",
        f"{at_report}: capability 'summary' has 2 producers: 'digest' at {at_digest}, "
        "'report' here (capability names are global: one producer per capability in all "
        "workflows)",
    ]
    message = load_error("two-producers")
    assert all(str(p) in message for p in problems)


def test_a_consumed_capability_with_two_producers_names_both_places(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(ROOT)
    folder = FIXTURES / "consumed-twice"
    at_crate = place(folder / "crate.ncl", '"formatted-code"]')
    at_extra = place(folder / "extra.ncl", '"formatted-code"]')
    located = [(p.location, p.message) for p in check_definitions(folder, LIB)]
    assert [where for where, _ in located] == [at_extra, at_crate]
    assert f"'fmt-crate' at {at_crate}" in located[0][1]
    assert f"'fmt-again' at {at_extra}" in located[1][1]
    message = load_error("consumed-twice")
    assert message.startswith(f"{at_extra}: capability 'formatted-code' has 2 producers")
    assert f"also {at_crate}: capability 'formatted-code' has 2 producers" in message


@pytest.mark.parametrize(
    ("folder", "file", "needle", "message"),
    [
        (
            "schema-conflict",
            "b.ncl",
            "code =",
            "capability 'code' has a different schema in ",
        ),
        (
            "bad-schema",
            "crate.ncl",
            "code =",
            "capability 'code' is not a valid JSON Schema: 'files' is not of type 'array'",
        ),
        (
            "no-schema",
            "crate.ncl",
            '"fmt-crate"',
            "node 'fmt-crate' produces 'formatted-code', which has no schema",
        ),
        (
            "missing-producer",
            "crate.ncl",
            '"build-crate"',
            "node 'build-crate' consumes 'formatted-code', which no node produces",
        ),
    ],
)
def test_graph_level_problems(folder: str, file: str, needle: str, message: str) -> None:
    assert located(FIXTURES / folder / file, needle) + message in load_error(folder)


def test_schema_conflict_names_both_places() -> None:
    line, column = position(FIXTURES / "schema-conflict" / "a.ncl", "code =")
    assert f"a.ncl:{line}:{column}" in load_error("schema-conflict")


def test_check_reports_every_broken_file() -> None:
    folder = FIXTURES / "several-broken"
    problems = check_definitions(folder, LIB)
    assert sorted(p.file.name for p in problems) == ["contract.ncl", "script.ncl", "syntax.ncl"]
    assert all(p.line is not None and p.column is not None for p in problems)
    # ok.ncl's missing producer and schema may be declared in a file that did not evaluate
    assert not any("ok.ncl" in str(p) for p in problems)
    message = load_error("several-broken")
    assert all(str(p) in message for p in problems)


def test_partial_load_keeps_the_files_that_evaluate(copy: tuple[Path, Path]) -> None:
    definitions, lib = copy
    whole = load_partial(definitions, lib)
    assert whole.complete and whole.graph == load_graph(definitions, lib)
    assert (whole.problems, whole.left_out, whole.broken_files) == ((), (), ())

    release = definitions / "release" / "release.ncl"
    release.write_text(release.read_text().replace("],\n  capabilities", ",\n  capabilities"))
    partial = load_partial(definitions, lib)
    assert not partial.complete
    assert partial.left_out == partial.broken_files == (release,)
    assert partial.problems == tuple(check_definitions(definitions, lib))
    assert [p.file for p in partial.problems] == [release]
    assert sorted(partial.graph.nodes) == ["build-crate", "fmt-crate", "lint-crate"]
    assert [list(s) for s in plan(partial.graph, "crate.push").stages] == [
        ["fmt-crate", "lint-crate"],
        ["build-crate"],
    ]
    with pytest.raises(PlanError, match=r"no node is triggered by topic 'release\.v1\.0'"):
        plan(partial.graph, "release.v1.0")


def test_problem_renders_location_and_snippet() -> None:
    problem = DefinitionProblem(
        file=Path("/elsewhere/x.ncl"), line=3, column=7, message="boom", snippet="3 │ x\n  │ ^"
    )
    assert str(problem) == "/elsewhere/x.ncl:3:7: boom"
    assert problem.render() == "/elsewhere/x.ncl:3:7: boom\n    3 │ x\n      │ ^"
    assert str(DefinitionProblem(file=Path("/a.ncl"), message="m")) == "/a.ncl: m"


def test_missing_folders_are_problems(tmp_path: Path) -> None:
    [problem] = check_definitions(tmp_path / "nope", LIB)
    assert "definitions folder not found" in problem.message
    [problem] = check_definitions(FIXTURES / "good", tmp_path)
    assert "no stratum.ncl" in problem.message


@pytest.fixture
def copy(tmp_path: Path) -> tuple[Path, Path]:
    """A private copy of the good definitions and of the library."""
    definitions, lib = tmp_path / "definitions", tmp_path / "lib"
    shutil.copytree(FIXTURES / "good", definitions)
    shutil.copytree(LIB, lib)
    return definitions, lib


def test_version_is_content_not_location(copy: tuple[Path, Path]) -> None:
    definitions, lib = copy
    assert load_graph(definitions, lib).version == load_graph(FIXTURES / "good", LIB).version


@pytest.mark.parametrize(
    "change",
    [
        "crate/fmt.nu",  # a handler
        "crate/unfmt.nu",  # a compensation
        "scripts/publish.nu",  # a script outside the workflow's folder
        "crate/crate.ncl",  # a workflow file (a comment is enough)
        "lib/stratum.ncl",  # the contract library
    ],
)
def test_version_changes_with_any_definition_or_script(
    copy: tuple[Path, Path], change: str
) -> None:
    definitions, lib = copy
    before = load_graph(definitions, lib).version
    assert load_graph(definitions, lib).version == before
    target = lib / "stratum.ncl" if change.startswith("lib/") else definitions / change
    target.write_text(target.read_text() + "\n# changed\n")
    assert load_graph(definitions, lib).version != before


def test_version_covers_scripts_outside_the_definitions(copy: tuple[Path, Path]) -> None:
    definitions, lib = copy
    outside = definitions.parent / "outside.nu"
    outside.write_text("def main [] { 1 }\n")
    (definitions / "extra.ncl").write_text(
        '{ nodes = [ { id = "extra", trigger = "x.y", handler = "../outside.nu" } ] }'
    )
    graph = load_graph(definitions, lib)
    assert graph.nodes["extra"].handler == outside
    outside.write_text("def main [] { 2 }\n")
    assert load_graph(definitions, lib).version != graph.version


def test_hidden_files_are_not_workflows(copy: tuple[Path, Path]) -> None:
    definitions, lib = copy
    (definitions / ".scratch").mkdir()
    (definitions / ".scratch" / "draft.ncl").write_text("{ broken")
    assert sorted(load_graph(definitions, lib).nodes) == sorted(
        load_graph(FIXTURES / "good", LIB).nodes
    )


def test_public_names() -> None:
    assert sorted(stratum.graph.__all__) == [
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
