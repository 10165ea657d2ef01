"""Best-effort source positions for problems Nickel did not report itself.

Problems found after evaluation (a missing script, a duplicate id) come from JSON, which has
no positions; searching the file for the literal is usually right and always better than
no line at all. When the value was computed rather than written, the line stays unknown.
"""

from __future__ import annotations

import re
from pathlib import Path

Position = tuple[int | None, int | None]
_UNKNOWN: Position = (None, None)


class Locator:
    """Finds `field = "value"` or a `name =` field in workflow files (texts are cached)."""

    def __init__(self) -> None:
        self._texts: dict[Path, str] = {}
        self._records: dict[Path, list[tuple[int, int]]] = {}

    def value(self, file: Path, field: str, value: str) -> Position:
        """Where `field = "value"` is written (at the opening quote), else any `"value"`."""
        return self._position(file, self._value_offset(file, field, value))

    def field(self, file: Path, name: str) -> Position:
        """Where the record field `name = ...` is written."""
        return self._position(
            file, self._offset(file, rf'(?<![\w-])("?{re.escape(name)}"?)\s*=(?!=)')
        )

    def entry(self, file: Path, node_id: str, field: str, value: str) -> Position:
        """Where `"value"` is written in the `field = [...]` list of the record declaring
        `id = "node_id"` (such as one capability of a node's `produces`), else that id."""
        at_id = self._value_offset(file, "id", node_id)
        if at_id is None:
            return _UNKNOWN
        text = self._text(file)
        enclosing = [span for span in self._spans(file) if span[0] < at_id < span[1]]
        if enclosing:
            start, end = max(enclosing)  # the innermost record around the id
            listed = re.compile(rf'(?<![\w-])"?{re.escape(field)}"?\s*=\s*\[([^\]]*)\]')
            for match in listed.finditer(text, start, end):
                found = text.find(f'"{value}"', match.start(1), match.end(1))
                if found >= 0:
                    return self._position(file, found)
        return self._position(file, at_id)

    def _value_offset(self, file: Path, field: str, value: str) -> int | None:
        literal = re.escape(f'"{value}"')
        return self._offset(
            file, rf'(?<![\w-])"?{re.escape(field)}"?\s*=\s*({literal})', rf"({literal})"
        )

    def _offset(self, file: Path, *patterns: str) -> int | None:
        text = self._text(file)
        for pattern in patterns:
            match = re.search(pattern, text)
            if match:
                return match.start(1)
        return None

    def _position(self, file: Path, offset: int | None) -> Position:
        if offset is None:
            return _UNKNOWN
        text = self._text(file)
        line_start = text.rfind("\n", 0, offset) + 1
        return text.count("\n", 0, offset) + 1, offset - line_start + 1

    def _spans(self, file: Path) -> list[tuple[int, int]]:
        if file not in self._records:
            self._records[file] = record_spans(self._text(file))
        return self._records[file]

    def _text(self, file: Path) -> str:
        if file not in self._texts:
            try:
                self._texts[file] = file.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                self._texts[file] = ""
        return self._texts[file]


def record_spans(text: str) -> list[tuple[int, int]]:
    """(offset of `{`, offset of its `}`) of every braced record in Nickel source, skipping
    `"..."` strings and `#` comments (enough for locating; Nickel has parsed it already)."""
    spans: list[tuple[int, int]] = []
    opened: list[int] = []
    position = 0
    while position < len(text):
        char = text[position]
        if char == "#":
            end = text.find("\n", position)
            position = len(text) if end < 0 else end
        elif char == '"':
            position += 1
            while position < len(text) and text[position] != '"':
                position += 2 if text[position] == "\\" else 1
        elif char == "{":
            opened.append(position)
        elif char == "}" and opened:
            spans.append((opened.pop(), position))
        position += 1
    return spans
