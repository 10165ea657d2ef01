"""What the executor is given and what it reports back (all frozen)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .bundle import safe_component
from .environment import RESERVED_ENV

Status = Literal["succeeded", "failed", "cancelled"]


class ExecutionContext(BaseModel):
    """Where and as whom a stage's nodes run. `workdir` is the scripts' cwd (where relative
    paths in event data resolve); `workspace` is the run's own folder for what it writes
    (HOME and STRATUM_WORKSPACE; created if missing), the workdir when not given."""

    model_config = ConfigDict(frozen=True)

    run_id: str
    tenant: str
    stage: int = Field(ge=0)
    data_dir: Path
    workdir: Path
    workspace: Path | None = None
    nu_bin: Path
    nu_path: str
    # May hold secrets: kept out of repr() so a logged context cannot leak them.
    extra_env: dict[str, str] = Field(default_factory=dict, repr=False)
    kill_grace: float = Field(default=1.0, ge=0)

    @property
    def workspace_dir(self) -> Path:
        return self.workspace or self.workdir

    @field_validator("run_id")
    @classmethod
    def _run_id_is_path_safe(cls, value: str) -> str:
        return safe_component(value, "run id")

    @field_validator("extra_env")
    @classmethod
    def _no_reserved_names(cls, value: dict[str, str]) -> dict[str, str]:
        clash = sorted(RESERVED_ENV.intersection(value))
        if clash:
            raise ValueError(f"may not set reserved variables: {', '.join(clash)}")
        return value


class AttemptRecord(BaseModel):
    """One finished attempt, as the caller records it. `retryable` says whether another
    attempt could help (non-zero exit, timeout) or not (bad output, a terminal exit code).
    `idempotency_key` is `run/node/attempt` (`run/node/compensate/attempt` for an undo),
    as the script saw it in STRATUM_IDEMPOTENCY_KEY. `credential_lease` names the
    credential the attempt's secrets were read with (revocable by it, unusable as it)."""

    model_config = ConfigDict(frozen=True)

    attempt: int
    idempotency_key: str
    status: Status
    exit_code: int | None
    signal: str | None
    timed_out: bool
    error: str | None
    retryable: bool
    started_at: datetime
    finished_at: datetime
    duration_ms: float
    bundle: Path
    # the id of the credential its secrets came under (never the credential): for audit
    credential_lease: str | None = None


class NodeOutcome(BaseModel):
    """How a node ended. `outputs` (capability -> value) is empty unless it succeeded;
    `outputs_hash` is the sha256 of their canonical JSON (sorted keys)."""

    model_config = ConfigDict(frozen=True)

    node_id: str
    status: Status
    attempts: list[AttemptRecord]
    outputs: dict[str, Any] = Field(default_factory=dict)
    outputs_hash: str | None = None
    error: str | None = None
    started_at: datetime
    finished_at: datetime


class StageOutcome(BaseModel):
    """Every node of a stage (in node-id order); `failed` if any node did not succeed."""

    model_config = ConfigDict(frozen=True)

    stage: int
    nodes: list[NodeOutcome]
    failed: bool
    started_at: datetime
    finished_at: datetime
