"""Running action nodes: Nushell scripts in their own process groups, JSON in and out.

`run_stage` runs a stage's nodes in parallel and stops them all at the first failure;
`run_node` runs one node with retries; `run_compensation` runs a node's undo script. Every
attempt leaves a bundle under `<data_dir>/runs/` (see `stratum.executor.bundle`).
`sweep_orphans` (at start-up) kills the scripts a killed instance left running. A node's
secrets come per attempt from a `CredentialsHook` the caller passes.
"""

from .bundle import attempt_dir, compensation_dir
from .config import ExecutorConfig
from .credentials import Credentials, CredentialsHook
from .environment import DEFAULT_TOOLS, RESERVED_ENV, curated_path, node_env
from .models import AttemptRecord, ExecutionContext, NodeOutcome, StageOutcome, Status
from .node import OnAttempt, run_compensation, run_node
from .orphans import OrphanRecord, sweep_orphans
from .process import GroupProcess, ProcessResult, run_process
from .stage import OnNodeDone, run_stage
from .validate import OutputError, parse_outputs, validator_for, validators_for

__all__ = [
    "DEFAULT_TOOLS",
    "RESERVED_ENV",
    "AttemptRecord",
    "Credentials",
    "CredentialsHook",
    "ExecutionContext",
    "ExecutorConfig",
    "GroupProcess",
    "NodeOutcome",
    "OnAttempt",
    "OnNodeDone",
    "OrphanRecord",
    "OutputError",
    "ProcessResult",
    "StageOutcome",
    "Status",
    "attempt_dir",
    "compensation_dir",
    "curated_path",
    "node_env",
    "parse_outputs",
    "run_compensation",
    "run_node",
    "run_process",
    "run_stage",
    "sweep_orphans",
    "validator_for",
    "validators_for",
]
