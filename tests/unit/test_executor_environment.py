"""The child's environment is built from scratch; the curated PATH is an allow-list."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from stratum.errors import ConfigError
from stratum.executor import RESERVED_ENV, ExecutionContext, curated_path, node_env


def _env(trace: dict[str, str] | None = None, **extra: str) -> dict[str, str]:
    return node_env(
        path="/tools",
        workspace=Path("/ws"),
        bundle=Path("/data/runs/r/2/n/3"),
        run_id="r",
        tenant="acme",
        node_id="n",
        stage=2,
        attempt=3,
        idempotency_key="r/n/3",
        extra_env=extra,
        trace=trace,
    )


def test_node_env_is_exactly_what_was_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARENT_ONLY", "x")
    assert _env(TOKEN="t") == {
        "PATH": "/tools",
        "LANG": "C.UTF-8",
        "HOME": "/ws",
        "STRATUM_RUN_ID": "r",
        "STRATUM_TENANT": "acme",
        "STRATUM_NODE": "n",
        "STRATUM_STAGE": "2",
        "STRATUM_ATTEMPT": "3",
        "STRATUM_IDEMPOTENCY_KEY": "r/n/3",
        "STRATUM_WORKSPACE": "/ws",
        "STRATUM_BUNDLE": "/data/runs/r/2/n/3",
        "TOKEN": "t",
    }
    # a node outside any trace gets no TRACEPARENT; every other reserved name is set
    assert set(_env()) == RESERVED_ENV - {"TRACEPARENT", "TRACESTATE"}


def test_the_attempts_trace_context_reaches_the_script() -> None:
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    env = _env({"traceparent": parent, "tracestate": "vendor=1"})
    assert env["TRACEPARENT"] == parent
    assert env["TRACESTATE"] == "vendor=1"


@pytest.mark.parametrize("name", ["PATH", "HOME", "STRATUM_ATTEMPT"])
def test_extra_env_cannot_override_reserved_names(name: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=name):
        _env(**{name: "x"})
    with pytest.raises(ValidationError, match=name):
        ExecutionContext(
            run_id="r",
            tenant="t",
            stage=0,
            data_dir=tmp_path,
            workdir=tmp_path,
            nu_bin=tmp_path / "nu",
            nu_path="/x",
            extra_env={name: "x"},
        )


@pytest.mark.parametrize("run_id", ["../escape", "a/b", "..", "", ".hidden"])
def test_run_id_must_be_path_safe(run_id: str, tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="run id"):
        ExecutionContext(
            run_id=run_id,
            tenant="t",
            stage=0,
            data_dir=tmp_path,
            workdir=tmp_path,
            nu_bin=tmp_path / "nu",
            nu_path="/x",
        )


def test_context_repr_hides_extra_env(tmp_path: Path) -> None:
    ctx = ExecutionContext(
        run_id="r",
        tenant="t",
        stage=0,
        data_dir=tmp_path,
        workdir=tmp_path,
        nu_bin=tmp_path / "nu",
        nu_path="/x",
        extra_env={"TOKEN": "s3cr3t-value"},
    )
    assert "s3cr3t-value" not in repr(ctx) and "s3cr3t-value" not in str(ctx)


def _fake_tool(directory: Path, name: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


def test_curated_path_links_only_listed_tools(tmp_path: Path) -> None:
    sys_bin, user_bin = tmp_path / "bin", tmp_path / "usr-bin"
    sh = _fake_tool(sys_bin, "sh")
    _fake_tool(sys_bin, "tput")
    git = _fake_tool(user_bin, "git")
    _fake_tool(user_bin, "sh")  # shadowed: the first on the search path wins
    tools = tmp_path / "tools"

    path = curated_path(tools, ["sh", "git", "missing"], f"{sys_bin}{os.pathsep}{user_bin}")

    assert path == str(tools)
    assert sorted(p.name for p in tools.iterdir()) == ["git", "sh"]
    assert os.readlink(tools / "sh") == str(sh) and os.readlink(tools / "git") == str(git)


def test_curated_path_is_idempotent_and_drops_stale_links(tmp_path: Path) -> None:
    sys_bin = tmp_path / "bin"
    for name in ("sh", "git", "tput"):
        _fake_tool(sys_bin, name)
    tools = tmp_path / "tools"
    curated_path(tools, ["sh", "git", "tput"], str(sys_bin))
    inode = (tools / "sh").lstat().st_ino

    curated_path(tools, ["sh", "git"], f"{tools}{os.pathsep}{sys_bin}")

    assert sorted(p.name for p in tools.iterdir()) == ["git", "sh"]
    assert (tools / "sh").lstat().st_ino == inode  # unchanged link left alone
    assert os.readlink(tools / "git") == str(sys_bin / "git")  # never a link to itself


def test_curated_path_rejects_paths_as_tool_names(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a plain command name"):
        curated_path(tmp_path / "tools", ["../sh"], "/usr/bin")
