"""How a process runs the nodes of any run: plain values taken from Settings by the adapter."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .bundle import attempt_dir, make_folders
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
    # each attempt's secrets (the secret broker's `credentials`); None: no secret store
    credentials: CredentialsHook | None = None

    def workspace(self, run_id: str) -> Path:
        """The run's own folder for the files its scripts write."""
        return self.data_dir / "runs" / run_id / "workspace"

    async def prepare_stage(self, run_id: str, stage: int, nodes: Iterable[str]) -> None:
        """Create the run's workspace and the stage's node folders off the event loop, while
        the stage's start is being stored: a folder costs a metadata write (over a
        millisecond on some disks), and each attempt only adds its own folder then."""
        folders = [self.workspace(run_id)]
        folders += [attempt_dir(self.data_dir, run_id, stage, node, 1).parent for node in nodes]
        await asyncio.to_thread(make_folders, folders)

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
