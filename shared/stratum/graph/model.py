"""The action graph as Python sees it after Nickel has evaluated and checked it.

These models mirror `nickel/lib/stratum.ncl`; Nickel is the authority on shape, these
models are the typed boundary the rest of Stratum works with.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field


class RetryPolicy(BaseModel):
    """Extra attempts after a failed first one, with exponential backoff.

    `terminal_exit_codes` are exits the script uses to say "retrying will not help" (bad
    input, a refused request): the node fails at once. A tuple, like `consumes`, so the
    frozen node stays hashable; Nickel hands it over as an array.
    """

    model_config = ConfigDict(frozen=True)

    max: int = 0
    backoff: float = 0.5
    factor: float = 2.0
    terminal_exit_codes: tuple[Annotated[int, Field(ge=1, le=255)], ...] = ()

    def delay_before(self, attempt: int) -> float:
        """Seconds to wait before the `attempt`-th attempt of one execution of the node
        (1-based, so the first never waits; not the attempt's number across re-executions)."""
        if attempt <= 1:
            return 0.0
        return float(self.backoff * self.factor ** (attempt - 2))


class ActionNode(BaseModel):
    """One step of a workflow: a Nushell script with what it consumes and produces.

    `handler` and `compensate` are absolute paths (the loader resolves them against the
    directory of the .ncl file that declared them); `source` is that file.
    """

    model_config = ConfigDict(frozen=True)

    id: str
    trigger: str | None = None
    consumes: tuple[str, ...] = ()
    produces: tuple[str, ...] = ()
    handler: Path
    compensate: Path | None = None
    timeout: float = 30.0
    retries: RetryPolicy = Field(default_factory=RetryPolicy)
    source: Path | None = None


class ActionGraph(BaseModel):
    """All nodes and capability schemas currently declared, with a content-hash version."""

    model_config = ConfigDict(frozen=True)

    version: str
    nodes: dict[str, ActionNode]
    # capability name -> JSON Schema (written in Nickel, see nickel/lib/stratum.ncl)
    schemas: dict[str, dict[str, Any]]


class Plan(BaseModel):
    """Stages of node ids for one topic: nodes in a stage run in parallel; stage i+1 starts
    when stage i has succeeded. Inside a stage, ids are in lexical order."""

    model_config = ConfigDict(frozen=True)

    topic: str
    graph_version: str
    stages: tuple[tuple[str, ...], ...]
