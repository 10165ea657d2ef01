"""Cut a Cedar policy file into its policies, each with the place it starts.

Cedar's parser and validator name no line or column, so each policy is checked on its
own and its problems are reported where it starts. A policy ends at a `;` outside string
literals and `//` comments (the only place Cedar's grammar has one).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Statement:
    """One policy's text (from its first token to its `;`) and where that token is
    (1-based)."""

    text: str
    line: int
    column: int


def split_statements(source: str) -> list[Statement]:
    """The policies in `source`, in order; text after the last `;` that is not blank or a
    comment is returned too (a policy missing its `;`, which Cedar then reports)."""
    statements: list[Statement] = []
    start: int | None = None
    index, length = 0, len(source)
    while index < length:
        char = source[index]
        if char == "/" and source.startswith("//", index):
            end = source.find("\n", index)
            index = length if end < 0 else end
            continue
        if start is None and not char.isspace():
            start = index
        if char == '"':
            index = _string_end(source, index)
        elif char == ";":
            assert start is not None
            statements.append(_statement(source, start, index + 1))
            start = None
        index += 1
    if start is not None:
        statements.append(_statement(source, start, length))
    return statements


def _string_end(source: str, opening: int) -> int:
    """Index of the quote closing the string opened at `opening` (or the end)."""
    index = opening + 1
    while index < len(source):
        if source[index] == "\\":
            index += 2
            continue
        if source[index] == '"':
            return index
        index += 1
    return len(source)


def _statement(source: str, start: int, end: int) -> Statement:
    line = source.count("\n", 0, start) + 1
    column = start - (source.rfind("\n", 0, start) + 1) + 1
    return Statement(text=source[start:end], line=line, column=column)
