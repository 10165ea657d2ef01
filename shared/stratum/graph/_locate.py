"""Best-effort source positions for problems Nickel did not report itself.

Problems found after evaluation (a missing script, a duplicate id) come from JSON, which has
no positions; searching the file for the literal is usually right and always better than
no line at all. When the value was computed rather than written, the line stays unknown.
"""

from __future__ import annotations

import re
from pathlib import Path

Position = tuple[int | None, int | None]


class Locator:
    """Finds `field = "value"` or a `name =` field in workflow files (texts are cached)."""

    def __init__(self) -> None:
        self._texts: dict[Path, str] = {}

    def value(self, file: Path, field: str, value: str) -> Position:
        """Where `field = "value"` is written (at the opening quote), else any `"value"`."""
        literal = re.escape(f'"{value}"')
        return self._search(
            file, rf'(?<![\w-])"?{re.escape(field)}"?\s*=\s*({literal})', rf"({literal})"
        )

    def field(self, file: Path, name: str) -> Position:
        """Where the record field `name = ...` is written."""
        return self._search(file, rf'(?<![\w-])("?{re.escape(name)}"?)\s*=(?!=)')

    def _search(self, file: Path, *patterns: str) -> Position:
        text = self._text(file)
        for pattern in patterns:
            match = re.search(pattern, text)
            if match:
                start = match.start(1)
                line_start = text.rfind("\n", 0, start) + 1
                return text.count("\n", 0, start) + 1, start - line_start + 1
        return None, None

    def _text(self, file: Path) -> str:
        if file not in self._texts:
            try:
                self._texts[file] = file.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                self._texts[file] = ""
        return self._texts[file]
