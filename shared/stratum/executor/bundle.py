"""The evidence every attempt leaves on disk, for debugging and audit.

`<data_dir>/runs/<run>/<stage>/<node>/<attempt>/` (compensations: `.../compensate/<node>/...`)
holds `stdin.json`, `stdout.log`, `stderr.log` and `manifest.json`. Plain writes, no fsync:
this is on the hot path and the database, not the bundle, is the record of truth. The
manifest lists environment variable names only, never values. The logs are written while
the script runs (`capture`), masked and cut at `LOG_LIMIT` bytes each; the manifest gives
the real sizes and hashes and says if a log was cut.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import orjson

from .process import ProcessResult

_SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def safe_component(value: str, what: str) -> str:
    """`value` if it is usable as one path component; a run or node id must never be able
    to point the bundle outside data_dir."""
    if not _SAFE.fullmatch(value) or value in (".", ".."):
        raise ValueError(f"{what} {value!r} is not usable in a path")
    return value


def attempt_dir(data_dir: Path, run_id: str, stage: int, node_id: str, attempt: int) -> Path:
    """Bundle directory of one attempt of a node's handler."""
    return _dir(data_dir, run_id, str(stage), node_id, attempt)


def compensation_dir(data_dir: Path, run_id: str, node_id: str, attempt: int) -> Path:
    """Bundle directory of one run of a node's compensation script."""
    return _dir(data_dir, run_id, "compensate", node_id, attempt)


def _dir(data_dir: Path, run_id: str, stage: str, node_id: str, attempt: int) -> Path:
    run = safe_component(run_id, "run id")
    node = safe_component(node_id, "node id")
    return data_dir / "runs" / run / stage / node / str(attempt)


def log_paths(directory: Path) -> tuple[Path, Path]:
    """Where a bundle's stdout and stderr go."""
    return directory / "stdout.log", directory / "stderr.log"


def make_folders(folders: Iterable[Path]) -> None:
    """Create `folders` (and their parents) ahead of the attempts that write into them; a
    failure is left for the attempt itself to meet and report."""
    for folder in folders:
        with contextlib.suppress(OSError):
            folder.mkdir(parents=True, exist_ok=True)


def open_bundle(directory: Path, stdin: bytes) -> None:
    """Create the directory and write `stdin.json` before the script starts (the script
    gets the path as STRATUM_BUNDLE and may add files of its own)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "stdin.json").write_bytes(stdin)


def close_bundle(
    directory: Path,
    result: ProcessResult,
    *,
    stdin: bytes,
    cwd: Path,
    env_names: Iterable[str],
    outcome: str,
    error: str | None,
    extra: Mapping[str, Any] | None = None,
) -> None:
    """Write the manifest (the logs are already there). The hashes and sizes are of what
    the process really read and wrote, not of the masked logs."""
    out, err = result.stdout_stats, result.stderr_stats
    manifest: dict[str, Any] = {
        **(extra or {}),
        "argv": list(result.argv),
        "env": sorted(env_names),
        "cwd": str(cwd),
        "exit_code": result.exit_code,
        "signal": result.signal,
        "timed_out": result.timed_out,
        "cancelled": result.cancelled,
        "started_at": result.started_at.isoformat(),
        "finished_at": result.finished_at.isoformat(),
        "duration_ms": result.duration_ms,
        "sha256": {
            "stdin": hashlib.sha256(stdin).hexdigest(),
            "stdout": out.sha256,
            "stderr": err.sha256,
        },
        "bytes": {"stdin": len(stdin), "stdout": out.size, "stderr": err.size},
        "truncated": {"stdout": out.truncated, "stderr": err.truncated},
        "redacted": out.redacted or err.redacted,
        "outcome": outcome,
        "error": error,
    }
    (directory / "manifest.json").write_bytes(
        orjson.dumps(manifest, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)
    )
