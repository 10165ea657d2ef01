"""The tree's layers hold: the library (`shared/stratum`) imports neither the functions nor
their wiring (`stratum_host`); the functions never import the wiring; and each function's
name is spelled once, in its own declaration."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from stratum_host.registry import DECLARATIONS, FUNCTION_NAMES
from tests.conftest import ROOT


def modules(folder: Path) -> Iterator[tuple[Path, ast.Module]]:
    for path in sorted(folder.rglob("*.py")):
        yield path, ast.parse(path.read_text(), filename=str(path))


def imported(tree: ast.Module) -> Iterator[str]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


def imports_of(folder: Path, *packages: str) -> list[str]:
    return [
        f"{path.relative_to(ROOT)} imports {name}"
        for path, tree in modules(folder)
        for name in imported(tree)
        if name.split(".")[0] in packages
    ]


def test_the_library_imports_neither_the_functions_nor_their_wiring() -> None:
    assert imports_of(ROOT / "shared" / "stratum", "functions", "stratum_host") == []


def test_the_functions_do_not_import_the_wiring() -> None:
    assert imports_of(ROOT / "functions", "stratum_host") == []


def test_each_function_name_is_spelled_once_in_its_own_declaration() -> None:
    names = set(FUNCTION_NAMES)
    spelled = [
        (str(path.relative_to(ROOT)), node.value)
        for folder in ("shared", "functions", "deploy")
        for path, tree in modules(ROOT / folder)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and node.value in names
        # `stratum.ingest.*` is an event-type namespace (rejected events), not the function
        and not (path.name == "subjects.py" and node.value == "ingest")
    ]
    expected = [(f"functions/{name.replace('-', '_')}/app.py", name) for name in FUNCTION_NAMES]
    assert sorted(spelled) == sorted(expected)
    assert len(FUNCTION_NAMES) == len(set(FUNCTION_NAMES)) == len(DECLARATIONS) == 5
