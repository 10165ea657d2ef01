"""Evaluate one workflow file with py-nickel (the only module that touches Nickel)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# The compiled module itself: mypy sees through `nickel/__init__.py`'s star import as empty.
from nickel.nickel import NickelException, run

LIBRARY = "stratum.ncl"


class NickelFailure(Exception):
    """Nickel refused the file; `report` is its (coloured) error report."""

    def __init__(self, report: str) -> None:
        super().__init__(report)
        self.report = report


def evaluate_workflow(file: Path, lib_dir: Path) -> Any:
    """The file's value as JSON data, after applying the `Workflow` contract.

    The file is imported by absolute path (not read and passed as text) so Nickel's error
    locations name the real file; the contract is applied here too, so a file that forgets
    it is still checked. The library is imported by absolute path so that no `stratum.ncl`
    in the working directory can stand in for it.
    """
    expr = f"(import {_string(file)}) | (import {_string(lib_dir / LIBRARY)}).Workflow"
    try:
        text = run(expr, import_paths=[str(lib_dir)])
    except NickelException as exc:
        raise NickelFailure(str(exc)) from None
    return json.loads(str(text))


def evaluate_file(file: Path, import_paths: list[Path]) -> Any:
    """Any Nickel file's value as JSON data (the startup config uses this)."""
    try:
        text = run(f"import {_string(file)}", import_paths=[str(p) for p in import_paths])
    except NickelException as exc:
        raise NickelFailure(str(exc)) from None
    return json.loads(str(text))


def _string(path: Path) -> str:
    """A Nickel string literal; `%` is escaped so `%{` in a path is not interpolation."""
    escaped = str(path).replace("\\", "\\\\").replace('"', '\\"').replace("%", "\\%")
    return f'"{escaped}"'
