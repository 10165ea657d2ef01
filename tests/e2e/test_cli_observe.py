"""Seeing runs without Grafana, through the real CLI against a running Stratum: `show`
draws a finished run's timeline, `emit --wait` on a terminal redraws its run as it moves,
and `top` reads the counts and queues from `/metrics`."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import pty
import re
import struct
import subprocess
import termios
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from functions.projector.core import RunView
from stratum.telemetry import tracing
from stratum_host.cli.fmt import ms
from tests.conftest import ROOT, Vault, make_settings
from tests.e2e.conftest import STRATUM, Harness, cli, cli_env, running

pytestmark = pytest.mark.asyncio(loop_scope="session")

SAMPLE = "nickel/examples/sample-crate"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@pytest_asyncio.fixture(loop_scope="session")
async def traced(tmp_path: Path, nats_url: str, openbao: Vault) -> AsyncIterator[Harness]:
    """A Stratum whose hops record spans (an SDK provider, exporting nowhere), so its runs
    carry a trace id."""
    tracing.use(TracerProvider())
    vault = {"vault_addr": openbao.addr, "vault_token": openbao.token}
    try:
        async with running(make_settings(tmp_path, nats_url, **vault)) as harness:
            yield harness
    finally:
        tracing.use(trace.get_tracer_provider())


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def in_order(text: str, *parts: str) -> None:
    at = 0
    for part in parts:
        found = text.find(part, at)
        assert found >= 0, f"{part!r} missing after offset {at} in:\n{text}"
        at = found + len(part)


def line_of(text: str, name: str) -> str:
    return next(line for line in text.splitlines() if f" {name} " in f" {line} ")


def since(view: dict[str, Any], at: str) -> float:
    created = datetime.fromisoformat(view["created_at"])
    return (datetime.fromisoformat(at) - created).total_seconds() * 1000


async def test_show_draws_a_finished_runs_timeline(traced: Harness, tmp_path: Path) -> None:
    stratum = traced
    run = await stratum.emit("crate.push", {"source": SAMPLE})
    view = await stratum.finished(run)
    assert view["status"] == "Succeeded", view.get("error")
    assert len(view.get("trace_id") or "") == 32, "the run joined no trace"

    text = ok(await cli(stratum, "show", run))
    assert "\x1b[" not in text  # piped: plain text
    in_order(
        text,
        run,
        "Succeeded",
        f"trace: {view['trace_id']}",
        "stage 0",
        "fmt-crate",
        "lint-crate",
        "stage 1",
        "build-crate",
    )
    for name in ("fmt-crate", "lint-crate", "build-crate"):
        node = view["nodes"][name]
        line = line_of(text, name)
        in_order(line, "succeeded", f"+{ms(since(view, node['started_at']))}")
        assert ms(node["duration_ms"]) in line
    # --json is the API's answer, untouched: the run's view and its history
    shown = json.loads(ok(await cli(stratum, "show", run, "--json")))
    assert {key: shown.get(key) for key in RunView.model_fields} == {
        key: view.get(key) for key in RunView.model_fields
    }
    assert "history" in shown

    target = tmp_path / "release"
    failing = {"version": "3.1.4", "target": str(target), "fail_at": "publish"}
    saga = await stratum.finished(await stratum.emit("release.request", failing))
    assert saga["status"] == "Compensated"
    text = ok(await cli(stratum, "show", saga["run_id"]))
    last_stage = f"stage {saga['stages'][-1]['index']}"
    steps = [f"{s['order'] + 1}. {s['node']} (stage {s['stage']})" for s in saga["compensation"]]
    in_order(text, "Compensated", last_stage, "compensation (reverse order)", *steps)
    in_order(text, "publish-release", "failed")


async def test_emit_wait_on_a_terminal_redraws_the_run_until_it_ends(stratum: Harness) -> None:
    args = ["emit", "crate.push", "--tenant", "acme", "--data", json.dumps({"source": SAMPLE})]
    code, screen = await asyncio.to_thread(on_terminal, cli_env(stratum), [*args, "--wait"])
    assert code == 0, screen
    assert "\x1b[?25l" in screen  # a live display took the terminal (hid the cursor)
    text = ANSI.sub("", screen)
    assert "waiting for run-" in text
    # after the redrawn frames, the finished run is printed once, as `show` prints it
    final = text[text.rindex("Succeeded") - 200 :]
    in_order(final, "Succeeded", "stage 0", "fmt-crate", "lint-crate", "stage 1", "build-crate")


def on_terminal(env: dict[str, str], args: list[str]) -> tuple[int, str]:
    """Run `stratum ARGS` with its stdout on a pseudo-terminal 120 columns wide; its exit
    code and all it wrote there."""
    master, replica = pty.openpty()
    fcntl.ioctl(replica, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 120, 0, 0))
    terminal = {k: v for k, v in env.items() if k not in ("NO_COLOR", "FORCE_COLOR", "CI")}
    process = subprocess.Popen(
        [STRATUM, *args],
        cwd=ROOT,
        env=terminal | {"TERM": "xterm-256color", "COLUMNS": "120", "LINES": "50"},
        stdin=subprocess.DEVNULL,
        stdout=replica,
        stderr=subprocess.STDOUT,
    )
    os.close(replica)
    chunks: list[bytes] = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: every writer closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    return process.wait(timeout=120), b"".join(chunks).decode(errors="replace")


async def test_top_once_reads_counts_and_queues_from_metrics(stratum: Harness) -> None:
    run = await stratum.emit("crate.push", {"source": SAMPLE})
    assert (await stratum.finished(run))["status"] == "Succeeded"
    # nothing traced this Stratum's runs, and `show` says so
    assert "trace: none (tracing off)" in ok(await cli(stratum, "show", run))

    snapshot = json.loads(ok(await cli(stratum, "top", "--once", "--json")))
    acme = {status.replace("_", "").lower(): n for status, n in snapshot["runs"]["acme"].items()}
    assert acme["accepted"] >= 1 and acme["succeeded"] >= 1
    assert snapshot["queues"], "no function reported its queue"
    for queue in snapshot["queues"].values():
        assert queue["waiting"] >= 0 and queue["in_flight"] >= 0
    graph = stratum.server.graphs.current
    assert graph is not None and snapshot["graph_version"] == graph.version

    text = ok(await cli(stratum, "top", "--once"))
    in_order(text, "stratum top", f"graph {graph.version}", "Runs", "acme", "Queues")


async def test_emit_with_otel_set_starts_the_runs_trace(stratum: Harness) -> None:
    """`stratum emit` under OTEL_* sends its span's traceparent with the event; this
    Stratum records no spans (tracing off), yet passes the publisher's context on through
    every hop, so the run's view names the trace the CLI started."""
    args = ["emit", "crate.push", "--tenant", "acme", "--data", json.dumps({"source": SAMPLE})]
    result = await asyncio.to_thread(
        subprocess.run,
        [STRATUM, *args],
        cwd=ROOT,
        env=cli_env(stratum) | {"OTEL_TRACES_EXPORTER": "console", "OTEL_SERVICE_NAME": "cli"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    emitted = re.search(r"run (\S+); trace ([0-9a-f]{32})", ok(result))
    assert emitted, result.stdout
    run, trace_id = emitted.groups()
    assert f'"trace_id": "0x{trace_id}"' in result.stdout  # the console exporter's span
    view = await stratum.finished(run)
    assert view["trace_id"] == trace_id

    # without OTEL_* the CLI starts no trace, and the run has none either
    plain = re.search(r"run (\S+)", ok(await cli(stratum, *args)))
    assert plain and "trace" not in plain.string
    assert not (await stratum.finished(plain.group(1))).get("trace_id")
