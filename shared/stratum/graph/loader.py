"""Load the action graph from Nickel workflow files, or list everything wrong with them.

Every `*.ncl` file under the definitions folder (recursively, hidden paths skipped) is a
workflow file: `{ nodes = [...], capabilities = { name = <JSON Schema> } }`. Nickel checks
each file on its own against `Workflow`; then the files are merged and the graph-wide rules
(a producer for every consumed capability, at most one producer per capability in the whole
graph, no cycle: everything the planner would refuse for some topic) are checked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from stratum.errors import DefinitionError
from stratum.graph._declarations import (
    FileDeclarations,
    merge,
    read_file_declarations,
    unschemaed_products,
)
from stratum.graph._diagnostics import parse_report
from stratum.graph._graph_wide import graph_wide_problems
from stratum.graph._locate import Locator
from stratum.graph._nickel import LIBRARY, NickelFailure, evaluate_workflow
from stratum.graph._version import Fingerprint
from stratum.graph.model import ActionGraph, ActionNode
from stratum.graph.problems import DefinitionProblem, display_path


def load_graph(definitions_dir: Path, lib_dir: Path) -> ActionGraph:
    """The action graph declared under `definitions_dir`, checked completely.

    `lib_dir` holds `stratum.ncl` (workflow files import it as `import "stratum.ncl"`).
    Raises DefinitionError if anything is wrong: the message starts with the first problem
    as `file:line:column: what` and its source excerpt, then one line per further problem.
    """
    scan = _scan(definitions_dir, lib_dir)
    if scan.problems:
        first, *rest = scan.problems
        lines = [first.render(), *(f"also {problem}" for problem in rest)]
        raise DefinitionError("\n".join(lines))
    return ActionGraph(version=scan.version, nodes=scan.nodes, schemas=scan.schemas)


def check_definitions(definitions_dir: Path, lib_dir: Path) -> list[DefinitionProblem]:
    """Every problem in the definitions (empty when `load_graph` would succeed).

    Each file is evaluated even when others fail. A missing producer or schema is held back
    while some file does not evaluate: it may well be declared in that file.
    """
    return _scan(definitions_dir, lib_dir).problems


class PartialGraph(BaseModel):
    """The graph of the workflow files that evaluate, beside every problem of the whole
    definitions. Only `complete` is the graph `load_graph` returns (and `stratum up` runs);
    otherwise a topic may plan differently: a producer in a file `left_out` is missing."""

    model_config = ConfigDict(frozen=True)

    graph: ActionGraph
    problems: tuple[DefinitionProblem, ...]
    left_out: tuple[Path, ...]  # workflow files that did not evaluate, so have no node here

    @property
    def complete(self) -> bool:
        return not self.problems

    @property
    def broken_files(self) -> tuple[Path, ...]:
        """Every file some problem is in, sorted."""
        return tuple(sorted({problem.file for problem in self.problems}))


def load_partial(definitions_dir: Path, lib_dir: Path) -> PartialGraph:
    """What `load_graph` would load, but never refused: a broken file is left out (its
    problems listed), the others' nodes kept (first declaration of an id wins), so what
    does not depend on the broken files can still be planned and shown."""
    scan = _scan(definitions_dir, lib_dir)
    graph = ActionGraph(version=scan.version, nodes=scan.nodes, schemas=scan.schemas)
    return PartialGraph(graph=graph, problems=tuple(scan.problems), left_out=tuple(scan.left_out))


class _Scan(BaseModel):
    model_config = ConfigDict(frozen=True)

    nodes: dict[str, ActionNode] = {}
    schemas: dict[str, dict[str, Any]] = {}
    problems: list[DefinitionProblem] = []
    left_out: list[Path] = []
    version: str = ""


def _scan(definitions_dir: Path, lib_dir: Path) -> _Scan:
    definitions, lib = definitions_dir.resolve(), lib_dir.resolve()
    if not definitions.is_dir():
        return _Scan(problems=[_folder_problem(definitions, "definitions folder not found")])
    if not (lib / LIBRARY).is_file():
        return _Scan(problems=[_folder_problem(lib, f"no {LIBRARY} in the library folder")])
    workflows = _files(definitions, (".ncl",), skip=lib)
    # Hash before evaluating: if a file changes during the load, the next load's version
    # differs, so a watcher never keeps a stale graph under a current version.
    fingerprint = Fingerprint()
    fingerprint.add_files("definitions", definitions, _files(definitions, (".ncl", ".nu")))
    fingerprint.add_files("lib", lib, _files(lib, (".ncl",)))

    locate = Locator()
    problems: list[DefinitionProblem] = []
    declarations: list[FileDeclarations] = []
    left_out: list[Path] = []
    for file in workflows:
        try:
            data = evaluate_workflow(file, lib)
        except NickelFailure as failure:
            problems.append(_nickel_problem(failure, file, lib))
            left_out.append(file)
            continue
        declared, file_problems = read_file_declarations(file, data, locate)
        declarations.append(declared)
        problems += file_problems

    merged = merge(declarations, locate)
    problems += merged.problems
    complete = not left_out
    if complete:
        problems += unschemaed_products(merged, locate)
    problems += graph_wide_problems(merged.nodes, locate, complete)
    for node in merged.nodes.values():
        for script in (node.handler, node.compensate):
            if script is not None and not script.is_relative_to(definitions):
                fingerprint.add_outside(script)
    return _Scan(
        nodes=merged.nodes,
        schemas=merged.schemas,
        problems=problems,
        left_out=left_out,
        version=fingerprint.digest(),
    )


def _files(root: Path, suffixes: tuple[str, ...], skip: Path | None = None) -> list[Path]:
    """Files under `root` with one of `suffixes`, sorted, hidden paths (editor and tool
    state such as `.git/` or `.#crate.ncl`) and everything under `skip` left out."""
    return sorted(
        path
        for path in root.rglob("*")
        if path.suffix in suffixes
        and path.is_file()
        and not any(part.startswith(".") for part in path.relative_to(root).parts)
        and not (skip is not None and path.is_relative_to(skip))
    )


def _nickel_problem(failure: NickelFailure, file: Path, lib: Path) -> DefinitionProblem:
    diagnostic = parse_report(failure.report, lib)
    return DefinitionProblem(
        file=diagnostic.file or file,
        line=diagnostic.line,
        column=diagnostic.column,
        message=diagnostic.message.replace(str(file), display_path(file)),
        snippet=diagnostic.snippet,
    )


def _folder_problem(folder: Path, message: str) -> DefinitionProblem:
    return DefinitionProblem(file=folder, message=message)
