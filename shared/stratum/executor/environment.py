"""The environment a node script sees: built from scratch, never inherited.

Inheriting the orchestrator's environment would leak its credentials and make a script's
behaviour depend on where it happened to run. Values passed here may be secrets, so callers
record only the names (`sorted(env)`), never the values.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

from stratum.errors import ConfigError

# Names the executor sets itself; `extra_env` may not override them.
RESERVED_ENV = frozenset(
    {
        "PATH",
        "LANG",
        "HOME",
        "STRATUM_RUN_ID",
        "STRATUM_TENANT",
        "STRATUM_NODE",
        "STRATUM_STAGE",
        "STRATUM_ATTEMPT",
        "STRATUM_IDEMPOTENCY_KEY",
        "STRATUM_WORKSPACE",
        "STRATUM_BUNDLE",
        "TRACEPARENT",
        "TRACESTATE",
    }
)

# What a node may call by default. `tput` is left out on purpose: without a terminal nu
# runs it 8 times per start (~7 ms of a ~25 ms spawn).
DEFAULT_TOOLS: tuple[str, ...] = (
    "sh",
    "bash",
    "env",
    "cat",
    "cp",
    "mv",
    "rm",
    "ln",
    "ls",
    "mkdir",
    "touch",
    "sleep",
    "date",
    "head",
    "tail",
    "wc",
    "sort",
    "uniq",
    "grep",
    "sed",
    "awk",
    "find",
    "xargs",
    "tar",
    "gzip",
    "sha256sum",
    "git",
    "curl",
    "jq",
)


def check_extra_env(extra_env: Mapping[str, str]) -> None:
    """Refuse caller variables that would shadow the executor's own (a caller bug)."""
    clash = sorted(RESERVED_ENV.intersection(extra_env))
    if clash:
        raise ConfigError(f"extra_env may not set reserved variables: {', '.join(clash)}")


def node_env(
    *,
    path: str,
    workspace: Path,
    bundle: Path,
    run_id: str,
    tenant: str,
    node_id: str,
    stage: int,
    attempt: int,
    idempotency_key: str,
    extra_env: Mapping[str, str],
    trace: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The complete environment of one attempt (HOME is the run workspace).

    STRATUM_IDEMPOTENCY_KEY is the same for the same attempt of a node whatever instance
    runs it: a script passes it to services that can drop a side effect already done.
    TRACEPARENT (and TRACESTATE) name the attempt's span, from `trace` (W3C headers), so a
    script's own calls can continue the run's trace."""
    check_extra_env(extra_env)
    env = dict(extra_env)
    env.update(
        PATH=path,
        LANG="C.UTF-8",
        HOME=str(workspace),
        STRATUM_RUN_ID=run_id,
        STRATUM_TENANT=tenant,
        STRATUM_NODE=node_id,
        STRATUM_STAGE=str(stage),
        STRATUM_ATTEMPT=str(attempt),
        STRATUM_IDEMPOTENCY_KEY=idempotency_key,
        STRATUM_WORKSPACE=str(workspace),
        STRATUM_BUNDLE=str(bundle),
    )
    for header, variable in (("traceparent", "TRACEPARENT"), ("tracestate", "TRACESTATE")):
        if (trace or {}).get(header):
            env[variable] = (trace or {})[header]
    return env


def curated_path(tool_dir: Path, tools: Sequence[str], search_path: str) -> str:
    """Make `tool_dir` hold a symlink per tool found on `search_path`; return it as PATH.

    Tools not found are skipped; symlinks for tools no longer listed are removed, so the
    directory is exactly the allow-list. Safe to call repeatedly (and concurrently).
    """
    tool_dir = tool_dir.absolute()
    tool_dir.mkdir(parents=True, exist_ok=True)
    # Never search tool_dir itself: that would link a tool to its own link.
    search = os.pathsep.join(
        entry
        for entry in search_path.split(os.pathsep)
        if entry and Path(entry).absolute() != tool_dir
    )
    wanted: dict[str, str] = {}
    for tool in tools:
        if not tool or "/" in tool or tool in (".", ".."):
            raise ConfigError(f"tool name {tool!r} is not a plain command name")
        found = shutil.which(tool, path=search)
        if found is not None:
            wanted[tool] = str(Path(found).absolute())
    for entry in tool_dir.iterdir():
        if entry.is_symlink() and entry.name not in wanted:
            entry.unlink(missing_ok=True)
    for tool, target in wanted.items():
        link = tool_dir / tool
        if link.is_symlink() and os.readlink(link) == target:
            continue
        tmp = tool_dir / f".{tool}.{secrets.token_hex(6)}.tmp"
        tmp.symlink_to(target)
        tmp.replace(link)  # atomic: a concurrent spawn sees the old or the new link
    return str(tool_dir)
