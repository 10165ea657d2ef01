"""stratum.executor against the real `nu` binary and real process groups (no mocks).

Scripts live in tests/integration/scripts/executor/. Process-liveness checks read /proc: a
killed grandchild is re-parented to PID 1, which may never reap it, so a zombie counts as
dead.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from stratum.errors import DefinitionError, DependencyUnavailableError
from stratum.executor import (
    DEFAULT_TOOLS,
    AttemptRecord,
    ExecutionContext,
    curated_path,
    run_compensation,
    run_node,
    run_process,
    run_stage,
)
from stratum.graph.model import ActionNode, RetryPolicy

ROOT = Path(__file__).resolve().parents[2]
NU = ROOT / ".venv" / "bin" / "nu"
SCRIPTS = Path(__file__).parent / "scripts" / "executor"
SECRET = "hunter2-very-secret"
SCHEMAS: dict[str, dict[str, Any]] = {
    "result": {"type": "object"},
    "tools": {"type": "object"},
    "linted-code": {
        "type": "object",
        "properties": {
            "warnings": {"type": "integer"},
            "files": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["warnings"],
        "additionalProperties": False,
    },
}


# ---------------------------------------------------------------- helpers and fixtures


def alive(pid: int) -> bool:
    """True while `pid` runs; zombies (state Z/X) are dead."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    state = stat.rsplit(")", 1)[1].split()[0]
    return state not in ("Z", "X")


def assert_eventually(check: Callable[[], bool], timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def assert_all_dead(pids: list[int]) -> None:
    assert pids
    assert_eventually(lambda: not any(alive(pid) for pid in pids))


async def wait_for_files(*paths: Path, timeout: float = 3.0) -> list[int]:
    """The pids written by sleepy.nu, once all its pid files exist."""
    deadline = time.monotonic() + timeout
    while not all(p.is_file() and p.read_text().strip() for p in paths):
        assert time.monotonic() < deadline, f"pid files not written: {paths}"
        await asyncio.sleep(0.02)
    return [int(p.read_text()) for p in paths]


def pid_files(bundle: Path) -> list[Path]:
    return [bundle / "nu.pid", bundle / "sh.pid", bundle / "grandchild.pid"]


def node(node_id: str, script: str, **kwargs: Any) -> ActionNode:
    return ActionNode(id=node_id, handler=SCRIPTS / script, **kwargs)


@pytest.fixture(scope="session")
def tool_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    assert NU.exists(), f"{NU} missing: run `make install`"
    return curated_path(tmp_path_factory.mktemp("tools"), DEFAULT_TOOLS, os.environ["PATH"])


@pytest.fixture
def ctx(tmp_path: Path, tool_path: str) -> ExecutionContext:
    return ExecutionContext(
        run_id=f"run-{uuid.uuid4().hex[:12]}",
        tenant="acme",
        stage=1,
        data_dir=tmp_path / "data",
        workdir=tmp_path / "workspace",
        nu_bin=NU,
        nu_path=tool_path,
        extra_env={"STRATUM_TEST_SECRET": SECRET},
        kill_grace=0.5,
    )


# ---------------------------------------------------------------- single node


async def test_success_outputs_env_and_bundle(
    ctx: ExecutionContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STRATUM_TEST_PARENT_ONLY", "must-not-leak")
    payload = {"run": {"id": ctx.run_id}, "event": {"type": "t"}, "inputs": {"value": 42}}
    records: list[AttemptRecord] = []

    async def on_attempt(record: AttemptRecord) -> None:
        records.append(record)

    out = await run_node(
        node("echo", "echo.nu", produces=("result",)), payload, SCHEMAS, ctx, on_attempt=on_attempt
    )

    assert out.status == "succeeded", out.error
    result = out.outputs["result"]
    assert result["value"] == 42
    assert (result["attempt"], result["node"], result["stage"]) == (1, "echo", 1)
    assert result["home"] == result["cwd"] == result["workspace"] == str(ctx.workdir)
    assert result["leaked"] is False  # the parent's environment is not inherited
    assert result["secret_seen"] is True  # extra_env reaches the script
    canonical = orjson.dumps(out.outputs, option=orjson.OPT_SORT_KEYS)
    assert out.outputs_hash == hashlib.sha256(canonical).hexdigest()
    assert records == out.attempts and len(records) == 1

    bundle = ctx.data_dir / "runs" / ctx.run_id / "1" / "echo" / "1"
    assert out.attempts[0].bundle == bundle
    assert sorted(p.name for p in bundle.iterdir()) == [
        "manifest.json",
        "stderr.log",
        "stdin.json",
        "stdout.log",
    ]
    manifest = orjson.loads((bundle / "manifest.json").read_bytes())
    assert manifest["env"] == sorted(
        [
            "HOME",
            "LANG",
            "PATH",
            "STRATUM_ATTEMPT",
            "STRATUM_BUNDLE",
            "STRATUM_NODE",
            "STRATUM_RUN_ID",
            "STRATUM_STAGE",
            "STRATUM_TENANT",
            "STRATUM_TEST_SECRET",
            "STRATUM_WORKSPACE",
        ]
    )
    assert manifest["argv"] == [str(NU), "--no-config-file", "--stdin", str(SCRIPTS / "echo.nu")]
    assert manifest["cwd"] == str(ctx.workdir)
    assert (manifest["exit_code"], manifest["signal"], manifest["timed_out"]) == (0, None, False)
    assert (manifest["outcome"], manifest["error"]) == ("succeeded", None)
    assert manifest["started_at"].endswith("+00:00") and manifest["duration_ms"] > 0
    stdout = (bundle / "stdout.log").read_bytes()
    assert orjson.loads(stdout) == out.outputs
    assert manifest["sha256"]["stdout"] == hashlib.sha256(stdout).hexdigest()
    assert orjson.loads((bundle / "stdin.json").read_bytes()) == payload
    for path in bundle.iterdir():  # names only: no value of the environment is written
        text = path.read_text()
        assert SECRET not in text and "must-not-leak" not in text
        assert ctx.nu_path not in text


async def test_timeout_kills_process_group_including_grandchild(ctx: ExecutionContext) -> None:
    sleepy = node("sleepy", "sleepy.nu", timeout=1.0, retries=RetryPolicy(max=0))

    started = time.monotonic()
    out = await run_node(sleepy, {}, SCHEMAS, ctx)
    elapsed = time.monotonic() - started

    assert out.status == "failed"
    assert out.error == "node sleepy: timed out after 1s (after 1 attempt)"
    (attempt,) = out.attempts
    assert attempt.timed_out and attempt.retryable and attempt.signal is not None
    assert 1.0 <= elapsed < 1.0 + ctx.kill_grace + 1.0
    pids = [int(p.read_text()) for p in pid_files(attempt.bundle)]
    assert len(set(pids)) == 3
    assert_all_dead(pids)


async def test_non_json_stdout_is_terminal(ctx: ExecutionContext) -> None:
    emit = node("emit", "emit.nu", produces=("result",), retries=RetryPolicy(max=3, backoff=0))
    out = await run_node(emit, {"inputs": {"raw": "hello\nworld"}}, SCHEMAS, ctx)

    assert out.status == "failed"
    assert len(out.attempts) == 1 and not out.attempts[0].retryable
    assert out.error == (
        "node emit: stdout is not JSON (first 80 chars: 'hello\\nworld') (terminal: not retried)"
    )


async def test_schema_violation_names_the_path_and_is_terminal(ctx: ExecutionContext) -> None:
    raw = '{"linted-code": {"warnings": "x"}}'
    lint = node("lint-crate", "emit.nu", produces=("linted-code",), retries=RetryPolicy(max=2))
    out = await run_node(lint, {"inputs": {"raw": raw}}, SCHEMAS, ctx)

    assert out.status == "failed" and len(out.attempts) == 1
    assert out.attempts[0].error == (
        "node lint-crate: output linted-code.warnings: 'x' is not of type 'integer'"
    )
    assert out.outputs == {} and out.outputs_hash is None
    manifest = orjson.loads((out.attempts[0].bundle / "manifest.json").read_bytes())
    assert manifest["error"] == out.attempts[0].error and manifest["retryable"] is False


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("{}", "missing linted-code"),
        ('{"linted-code": {"warnings": 0}, "extra": 1}', "unexpected extra"),
        ('{"other": 1}', "missing linted-code; unexpected other"),
        ("", "stdout is empty, expected an object with linted-code"),
        ("[1, 2]", "stdout is a JSON list, expected an object"),
    ],
)
async def test_output_keys_must_match_produces(
    ctx: ExecutionContext, raw: str, expected: str
) -> None:
    lint = node("lint", "emit.nu", produces=("linted-code",), retries=RetryPolicy(max=2))
    out = await run_node(lint, {"inputs": {"raw": raw}}, SCHEMAS, ctx)

    assert out.status == "failed" and len(out.attempts) == 1
    assert out.error is not None and expected in out.error


@pytest.mark.parametrize("raw", ["", "{}", "  \n"])
async def test_node_producing_nothing_may_print_nothing(ctx: ExecutionContext, raw: str) -> None:
    out = await run_node(node("quiet", "emit.nu"), {"inputs": {"raw": raw}}, SCHEMAS, ctx)
    assert out.status == "succeeded" and out.outputs == {}


async def test_retry_after_failure_with_backoff(ctx: ExecutionContext) -> None:
    policy = RetryPolicy(max=2, backoff=0.3, factor=2.0)
    flaky = node("flaky", "flaky.nu", produces=("result",), retries=policy)
    seen: list[int] = []

    async def on_attempt(record: AttemptRecord) -> None:
        seen.append(record.attempt)

    out = await run_node(flaky, {"inputs": {"succeed_on": 2}}, SCHEMAS, ctx, on_attempt=on_attempt)

    assert out.status == "succeeded", out.error
    assert out.outputs == {"result": {"value": "ok", "attempt": 2}}
    first, second = out.attempts
    assert seen == [1, 2]
    assert first.status == "failed" and first.retryable and first.exit_code == 1
    assert first.error == "node flaky: exit code 1: attempt 1: not yet"
    assert second.status == "succeeded"
    gap = (second.started_at - first.finished_at).total_seconds()
    assert gap >= policy.delay_before(2)
    assert first.bundle.name == "1" and second.bundle.name == "2"


async def test_nonzero_exit_captures_stderr_and_exhausts_retries(ctx: ExecutionContext) -> None:
    fail = node("fail", "fail.nu", retries=RetryPolicy(max=1, backoff=0.05))
    payload = {"inputs": {"delay_ms": 0, "message": "disk on fire", "code": 7}}
    out = await run_node(fail, payload, SCHEMAS, ctx)

    assert out.status == "failed"
    assert [a.exit_code for a in out.attempts] == [7, 7]
    assert out.error == "node fail: exit code 7: disk on fire (after 2 attempts)"
    assert "disk on fire" in (out.attempts[1].bundle / "stderr.log").read_text()


async def test_nu_error_message_is_the_error_line(ctx: ExecutionContext) -> None:
    # A nu-level error (bad input) is reported by miette over several lines; the error
    # line keeps the message only.
    out = await run_node(node("emit", "emit.nu"), {"inputs": {}}, SCHEMAS, ctx)
    assert out.status == "failed"
    error = out.attempts[0].error
    assert error is not None and error.startswith("node emit: exit code 1: ")
    assert "\n" not in error and "raw" in error


async def test_secret_values_are_masked(ctx: ExecutionContext) -> None:
    raw = f"oops {SECRET}"
    out = await run_node(
        node("leak", "emit.nu", produces=("result",)), {"inputs": {"raw": raw}}, SCHEMAS, ctx
    )

    assert out.error is not None and SECRET not in out.error and "***" in out.error
    bundle = out.attempts[0].bundle
    assert SECRET not in (bundle / "stdout.log").read_text()
    manifest = orjson.loads((bundle / "manifest.json").read_bytes())
    assert manifest["redacted"] is True
    assert manifest["sha256"]["stdout"] == hashlib.sha256(raw.encode()).hexdigest()


async def test_curated_path_hides_tput(ctx: ExecutionContext, tmp_path: Path) -> None:
    assert shutil.which("tput"), "tput must exist on the host for this test to mean anything"
    tools = node("tools", "tools.nu", produces=("tools",))

    hidden = await run_node(tools, {}, SCHEMAS, ctx)
    full = ctx.model_copy(update={"nu_path": os.environ["PATH"], "data_dir": tmp_path / "d2"})
    visible = await run_node(tools, {}, SCHEMAS, full)

    assert hidden.outputs["tools"]["tput"] is False
    assert hidden.outputs["tools"]["sh"] is True
    assert hidden.outputs["tools"]["path"] == [ctx.nu_path]
    assert visible.outputs["tools"]["tput"] is True


async def test_missing_handler_fails_without_attempts(ctx: ExecutionContext) -> None:
    out = await run_node(node("ghost", "does-not-exist.nu"), {}, SCHEMAS, ctx)
    assert out.status == "failed" and out.attempts == []
    assert out.error is not None and "handler not found" in out.error


async def test_missing_schema_is_a_definition_error_before_running(
    ctx: ExecutionContext,
) -> None:
    with pytest.raises(DefinitionError, match="no schema for capability nope"):
        await run_node(node("echo", "echo.nu", produces=("nope",)), {}, SCHEMAS, ctx)
    assert not (ctx.data_dir / "runs").exists()


async def test_missing_nu_is_a_dependency_error(ctx: ExecutionContext, tmp_path: Path) -> None:
    broken = ctx.model_copy(update={"nu_bin": tmp_path / "no-nu"})
    with pytest.raises(DependencyUnavailableError, match="cannot start nu"):
        await run_node(node("echo", "echo.nu", produces=("result",)), {}, SCHEMAS, broken)


async def test_compensation_keeps_free_form_output(ctx: ExecutionContext) -> None:
    step = ActionNode(
        id="deploy", handler=SCRIPTS / "echo.nu", compensate=SCRIPTS / "undo.nu", produces=()
    )
    out = await run_compensation(step, {"inputs": {"value": "v1"}}, ctx)

    assert out.status == "succeeded", out.error
    bundle = ctx.data_dir / "runs" / ctx.run_id / "compensate" / "deploy" / "1"
    assert out.attempts[0].bundle == bundle
    assert (bundle / "stdout.log").read_text().startswith("compensated (plain text")
    assert (ctx.workdir / "undone.txt").read_text() == "undone v1"


# ---------------------------------------------------------------- process runner


async def test_leftover_background_process_is_killed_on_normal_exit(tmp_path: Path) -> None:
    # The shell exits at once but its child keeps stdout open: without killing the group
    # this would wait 30 s for EOF.
    started = time.monotonic()
    result = await run_process(
        ["sh", "-c", "sleep 30 & echo $!"],
        stdin=b"",
        env={"PATH": os.environ["PATH"]},
        cwd=tmp_path,
        timeout=10,
    )
    assert time.monotonic() - started < 2
    assert result.returncode == 0 and not result.timed_out
    pid = int(result.stdout)
    assert_eventually(lambda: not alive(pid))


async def test_sigterm_ignored_means_sigkill_after_grace(tmp_path: Path) -> None:
    started = time.monotonic()
    result = await run_process(
        ["sh", "-c", "trap '' TERM; sleep 30 & echo $! > child.pid; wait"],
        stdin=b"",
        env={"PATH": os.environ["PATH"]},
        cwd=tmp_path,
        timeout=0.3,
        kill_grace=0.4,
    )
    elapsed = time.monotonic() - started
    assert result.timed_out and result.signal == "SIGKILL"
    assert 0.7 <= elapsed < 2.0
    pid = int((tmp_path / "child.pid").read_text())
    assert_eventually(lambda: not alive(pid))


# ---------------------------------------------------------------- stages


async def test_stage_first_failure_cancels_siblings(ctx: ExecutionContext) -> None:
    nodes = [
        node("sleeper", "sleepy.nu", timeout=30),
        node("breaker", "fail.nu", retries=RetryPolicy(max=0)),
        node("echo", "echo.nu", produces=("result",)),
    ]
    payloads: dict[str, dict[str, Any]] = {
        "sleeper": {},
        "breaker": {"inputs": {"delay_ms": 400, "message": "broken", "code": 3}},
        "echo": {"inputs": {"value": 1}},
    }
    records: list[AttemptRecord] = []

    async def on_attempt(record: AttemptRecord) -> None:
        records.append(record)

    started = time.monotonic()
    stage = await run_stage(nodes, payloads, SCHEMAS, ctx, on_attempt=on_attempt)
    elapsed = time.monotonic() - started

    assert elapsed < 3, "the stage must not wait for the 30 s sleeper"
    assert stage.failed and stage.stage == ctx.stage
    by_id = {o.node_id: o for o in stage.nodes}
    assert [o.node_id for o in stage.nodes] == ["breaker", "echo", "sleeper"]
    assert by_id["breaker"].status == "failed"
    assert by_id["echo"].status == "succeeded"
    sleeper = by_id["sleeper"]
    assert sleeper.status == "cancelled"
    assert sleeper.error == "node sleeper: cancelled: breaker failed"
    (attempt,) = sleeper.attempts
    assert attempt.status == "cancelled" and attempt.signal is not None
    assert attempt in records
    manifest = orjson.loads((attempt.bundle / "manifest.json").read_bytes())
    assert manifest["cancelled"] is True and manifest["outcome"] == "cancelled"
    assert_all_dead([int(p.read_text()) for p in pid_files(attempt.bundle)])


async def test_cancelling_the_stage_kills_every_node(ctx: ExecutionContext) -> None:
    nodes = [node("a", "sleepy.nu"), node("b", "sleepy.nu")]
    task = asyncio.create_task(run_stage(nodes, {"a": {}, "b": {}}, SCHEMAS, ctx))
    base = ctx.data_dir / "runs" / ctx.run_id / str(ctx.stage)
    pids = [pid for n in ("a", "b") for pid in await wait_for_files(*pid_files(base / n / "1"))]
    assert all(alive(pid) for pid in pids)

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert_all_dead(pids)


async def test_stage_reraises_errors_that_are_not_node_failures(ctx: ExecutionContext) -> None:
    nodes = [node("sleeper", "sleepy.nu"), node("bad", "echo.nu", produces=("nope",))]
    with pytest.raises(DefinitionError, match="node bad"):
        await asyncio.wait_for(run_stage(nodes, {"sleeper": {}, "bad": {}}, SCHEMAS, ctx), 5)
    assert not (ctx.data_dir / "runs").exists(), "checked before any node started"


async def test_stage_all_succeed(ctx: ExecutionContext) -> None:
    nodes = [node(f"n{i}", "echo.nu", produces=("result",)) for i in (3, 1, 2)]
    payloads = {n.id: {"inputs": {"value": n.id}} for n in nodes}
    stage = await run_stage(nodes, payloads, SCHEMAS, ctx)
    assert not stage.failed
    assert [(o.node_id, o.outputs["result"]["value"]) for o in stage.nodes] == [
        ("n1", "n1"),
        ("n2", "n2"),
        ("n3", "n3"),
    ]
