"""What `stratum check` reports: one problem in the definitions, with its place."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict


class DefinitionProblem(BaseModel):
    """A problem in a workflow file: `file:line:column: message`, plus Nickel's excerpt of
    the offending source when there is one. `line`/`column` are 1-based, None if unknown."""

    model_config = ConfigDict(frozen=True)

    file: Path
    line: int | None = None
    column: int | None = None
    message: str
    snippet: str = ""

    @property
    def location(self) -> str:
        """`path[:line[:column]]`, the path relative to the working directory when inside
        it (what editors and terminals turn into links)."""
        place = display_path(self.file)
        if self.line is not None:
            place += f":{self.line}"
            if self.column is not None:
                place += f":{self.column}"
        return place

    def __str__(self) -> str:
        return f"{self.location}: {self.message}"

    def render(self) -> str:
        """The one-line form followed by the indented excerpt, for humans."""
        if not self.snippet:
            return str(self)
        excerpt = "\n".join(f"    {line}" if line else "" for line in self.snippet.splitlines())
        return f"{self}\n{excerpt}"


def display_path(path: Path) -> str:
    """`path` relative to the working directory if it lies inside it, else as given."""
    try:
        return str(path.relative_to(Path(os.getcwd())))
    except ValueError:
        return str(path)
