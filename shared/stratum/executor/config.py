"""How a process runs the nodes of any run: plain values taken from Settings by the adapter."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .credentials import CredentialsHook
from .models import ExecutionContext


@dataclass(frozen=True)
class ExecutorConfig:
    """Plain values the executor needs (from Settings, built by the adapter)."""

    data_dir: Path
    workdir: Path
    nu_bin: Path
    nu_path: str
    kill_grace: float
    concurrency: int
    # each attempt's secrets (the secret broker's `credentials`); None: no secret store
    credentials: CredentialsHook | None = None

    def workspace(self, run_id: str) -> Path:
        """The run's own folder for the files its scripts write."""
        return self.data_dir / "runs" / run_id / "workspace"

    def context(self, run_id: str, tenant: str, stage: int) -> ExecutionContext:
        """Where and how a node of this run runs (its handler or its compensation)."""
        return ExecutionContext(
            run_id=run_id,
            tenant=tenant,
            stage=stage,
            data_dir=self.data_dir,
            workdir=self.workdir,
            workspace=self.workspace(run_id),
            nu_bin=self.nu_bin,
            nu_path=self.nu_path,
            kill_grace=self.kill_grace,
        )
