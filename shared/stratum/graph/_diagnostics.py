"""Turn Nickel's coloured, multi-snippet error report into one located, plain message.

Pure text processing. Nickel locates an error in several places (the library contract, the
user's file, values generated during evaluation); the place worth showing is the first one
in a real file outside the contract library, i.e. the workflow author's own code.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

from pydantic import BaseModel, ConfigDict

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_LOCATION = re.compile(r"^\s*┌─ (?P<path>.+):(?P<line>\d+):(?P<column>\d+)\s*$")
_NOTE = re.compile(r"^\s*= (?P<text>.*)$")
_GUTTER_ONLY = re.compile(r"^\s*│\s*$")
# Advice for whoever writes the contract (stratum.ncl), not for the workflow author.
_CONTRACT_AUTHOR_HINT = "The record contract might also be too strict"


class NickelDiagnostic(BaseModel):
    """The first error of a Nickel report: what, where (when Nickel said so), and the
    source excerpt at that place."""

    model_config = ConfigDict(frozen=True)

    message: str
    file: Path | None = None
    line: int | None = None
    column: int | None = None
    snippet: str = ""


class _Block(BaseModel):
    path: str
    line: int
    column: int
    lines: list[str]


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


def parse_report(report: str, lib_dir: Path) -> NickelDiagnostic:
    """Parse a Nickel error report (ANSI codes allowed) into a `NickelDiagnostic`.

    `lib_dir` must be absolute and resolved, as the paths in the report are.
    """
    lines = _first_error(strip_ansi(report).splitlines())
    header: list[str] = []
    blocks: list[_Block] = []
    notes: list[str] = []
    for line in lines:
        location = _LOCATION.match(line)
        note = _NOTE.match(line)
        if location:
            blocks.append(
                _Block(
                    path=location["path"],
                    line=int(location["line"]),
                    column=int(location["column"]),
                    lines=[],
                )
            )
        elif note:
            notes.append(note["text"].strip())
        elif notes and line.strip() and "│" not in line:
            notes[-1] += " " + line.strip()  # a note wrapped onto the next line
        elif blocks and not notes:
            blocks[-1].lines.append(line)
        elif not blocks and line.strip():
            header.append(line.strip())
    notes = [note for note in notes if not note.startswith(_CONTRACT_AUTHOR_HINT)]
    message = _message(header, notes)
    if len(header) <= 1:
        notes = []  # already in the message
    block = _authors_block(blocks, lib_dir)
    if block is None:
        return NickelDiagnostic(message=message, snippet=_notes(notes))
    return NickelDiagnostic(
        message=message,
        file=Path(block.path),
        line=block.line,
        column=block.column,
        snippet="\n".join(part for part in (_excerpt(block.lines), _notes(notes)) if part),
    )


def _first_error(lines: list[str]) -> list[str]:
    """Nickel may report several errors; the first is the cause, the others follow from it."""
    starts = [i for i, line in enumerate(lines) if line.startswith(("error", "warning"))]
    errors = [i for i in starts if lines[i].startswith("error")]
    if not errors:
        return lines
    first = errors[0]
    end = next((i for i in starts if i > first), len(lines))
    return lines[first:end]


def _message(header: list[str], notes: list[str]) -> str:
    if not header:
        return "Nickel evaluation failed"
    summary = re.sub(r"^error(\[[^\]]*\])?:\s*", "", header[0])
    details = header[1:] or notes  # a bare summary ("dynamic type error") needs the notes
    return ": ".join([summary, "; ".join(details)]) if details else summary


def _authors_block(blocks: list[_Block], lib_dir: Path) -> _Block | None:
    for block in blocks:
        path = Path(block.path)
        # Files are imported by absolute path, so a relative "path" is not a file:
        # `python:1:1` is our wrapper expression, `<stdlib/...>` and `<unknown> ...` Nickel's.
        if path.is_absolute() and not path.is_relative_to(lib_dir):
            return block
    return None


def _excerpt(lines: list[str]) -> str:
    kept = [line.rstrip() for line in lines if line.strip() and not _GUTTER_ONLY.match(line)]
    return textwrap.dedent("\n".join(kept))


def _notes(notes: list[str]) -> str:
    return "\n".join(f"= {note}" for note in notes)
