"""The action graph as Python sees it after Nickel has evaluated and checked it.

These models mirror `nickel/lib/stratum.ncl`; Nickel is the authority on shape, these
models are the typed boundary the rest of Stratum works with.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

# Mirrors `SecretPath` and `EnvName` in stratum.ncl (the executor sets PATH, LANG, HOME and
# STRATUM_*; see stratum.executor.RESERVED_ENV).
SECRET_PATH = r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*(/[A-Za-z0-9_-][A-Za-z0-9_.-]*)*$"
_ENV_NAME = r"^[A-Z_][A-Z0-9_]*$"
_EXECUTOR_ENV = frozenset({"PATH", "LANG", "HOME"})


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


class SecretRef(BaseModel):
    """A secret a node reads for each attempt: `key` of the KV v2 secret at `mount`/`path`,
    handed to the script as the variable `env`. A reference, never a value: safe to store."""

    model_config = ConfigDict(frozen=True)

    path: str = Field(pattern=SECRET_PATH)
    key: str = Field(min_length=1, pattern=r"^\S+$")
    env: str = Field(pattern=_ENV_NAME)
    mount: str = Field(default="secret", pattern=SECRET_PATH)

    @field_validator("env")
    @classmethod
    def _not_the_executors(cls, value: str) -> str:
        if value in _EXECUTOR_ENV or value.startswith("STRATUM_"):
            raise ValueError(f"{value} is set by Stratum itself (PATH, LANG, HOME, STRATUM_*)")
        return value


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
    secrets: tuple[SecretRef, ...] = ()
    # a failed stage this node is in: undo what succeeded (the saga), or hold for an operator
    on_failure: Literal["compensate", "hold"] = "compensate"
    source: Path | None = None

    @field_validator("secrets")
    @classmethod
    def _secrets_fit(
        cls, value: tuple[SecretRef, ...], info: ValidationInfo
    ) -> tuple[SecretRef, ...]:
        names = [secret.env for secret in value]
        if len(set(names)) != len(names):
            raise ValueError(f"two secrets use one variable: {sorted(names)}")
        # a credential lives whole seconds, never longer than the node may run
        if value and info.data.get("timeout", 30.0) < 1:
            raise ValueError("a node that reads secrets needs a timeout of at least 1 second")
        return value


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
