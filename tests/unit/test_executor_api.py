"""Pins the public surface of stratum.executor: changing it must be deliberate."""

from __future__ import annotations

from pathlib import Path

import pytest

import stratum.executor
from stratum.executor import attempt_dir, compensation_dir


def test_exported_names() -> None:
    assert sorted(stratum.executor.__all__) == sorted(
        [
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
    )
    for name in stratum.executor.__all__:
        assert hasattr(stratum.executor, name), name


def test_bundle_layout() -> None:
    data = Path("/data")
    assert attempt_dir(data, "run-1", 2, "lint", 3) == Path("/data/runs/run-1/2/lint/3")
    assert compensation_dir(data, "run-1", "lint", 1) == Path("/data/runs/run-1/compensate/lint/1")


@pytest.mark.parametrize("bad", ["..", "a/b", "", "-flag", "a b"])
def test_bundle_paths_refuse_unsafe_ids(bad: str) -> None:
    with pytest.raises(ValueError, match="not usable in a path"):
        attempt_dir(Path("/data"), "run", 0, bad, 1)
    with pytest.raises(ValueError, match="not usable in a path"):
        compensation_dir(Path("/data"), bad, "node", 1)
