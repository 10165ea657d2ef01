"""The tree's rules that keep it easy to walk: a function imports the core library
(`stratum`) and itself, never another function."""

from __future__ import annotations

import ast
from pathlib import Path

FUNCTIONS = Path(__file__).resolve().parents[2] / "functions"


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_functions_never_import_each_other() -> None:
    function_dirs = [p for p in FUNCTIONS.iterdir() if (p / "app.py").is_file()]
    assert {p.name for p in function_dirs} == {
        "ingest",
        "planner",
        "stage_executor",
        "compensator",
        "projector",
    }
    crossings = [
        f"{source.relative_to(FUNCTIONS)} imports {module}"
        for directory in function_dirs
        for source in directory.rglob("*.py")
        for module in imported_modules(source)
        if module.startswith("functions.") and not module.startswith(f"functions.{directory.name}")
    ]
    assert crossings == []
