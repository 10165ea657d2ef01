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
    AttemptRecord,
    ExecutionContext,
    run_compensation,
    run_node,
    run_process,
    run_stage,
)
from stratum.executor.capture import LOG_LIMIT, STDERR_TAIL, STDOUT_LIMIT
from stratum.graph.loader import load_graph
from stratum.graph.model import ActionNode, RetryPolicy
from tests.integration.conftest import NU

ROOT = Path(__file__).resolve().parents[2]
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
            "STRATUM_IDEMPOTENCY_KEY",
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


# ---------------------------------------------------------------- attempt numbering


def write_script(folder: Path, name: str, body: str) -> Path:
    """A nu script made for one test (`body` is the inside of `def main [] { ... }`)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(f"def main [] {{\n    $in | ignore\n{body}\n}}\n")
    return path


KEY_SCRIPT = """
    let attempt = ($env.STRATUM_ATTEMPT | into int)
    if $attempt < 5 { print -e $"attempt ($attempt): not yet"; exit 1 }
    {result: {key: $env.STRATUM_IDEMPOTENCY_KEY, attempt: $attempt}} | to json -r
"""


async def test_first_attempt_continues_numbering_with_backoff_from_this_run(
    ctx: ExecutionContext, tmp_path: Path
) -> None:
    # Absolute numbers 3, 4, 5; backoff counts from this run: 0.2 s then 0.8 s (by the
    # absolute number it would be 3.2 s then 12.8 s).
    policy = RetryPolicy(max=2, backoff=0.2, factor=4.0)
    script = write_script(tmp_path / "scripts", "key.nu", KEY_SCRIPT)
    keyed = ActionNode(id="keyed", handler=script, produces=("result",), retries=policy)

    out = await run_node(keyed, {}, SCHEMAS, ctx, first_attempt=3)

    assert out.status == "succeeded", out.error
    assert [a.attempt for a in out.attempts] == [3, 4, 5]
    keys = [f"{ctx.run_id}/keyed/{n}" for n in (3, 4, 5)]
    assert [a.idempotency_key for a in out.attempts] == keys
    assert out.outputs == {"result": {"key": keys[-1], "attempt": 5}}
    assert [a.bundle.name for a in out.attempts] == ["3", "4", "5"]
    for attempt in out.attempts:
        manifest = orjson.loads((attempt.bundle / "manifest.json").read_bytes())
        assert (manifest["attempt"], manifest["idempotency_key"]) == (
            attempt.attempt,
            attempt.idempotency_key,
        )
    first, second, third = out.attempts
    gaps = [
        (second.started_at - first.finished_at).total_seconds(),
        (third.started_at - second.finished_at).total_seconds(),
    ]
    assert 0.2 <= gaps[0] < 1.5 and 0.8 <= gaps[1] < 2.5, gaps


async def test_stage_first_attempts_per_node(ctx: ExecutionContext, tmp_path: Path) -> None:
    script = write_script(tmp_path / "scripts", "key.nu", KEY_SCRIPT)
    nodes = [
        ActionNode(id="again", handler=script, produces=("result",)),
        node("fresh", "echo.nu", produces=("result",)),
    ]
    payloads: dict[str, dict[str, Any]] = {"again": {}, "fresh": {"inputs": {"value": 1}}}

    # "again" already made attempts 1-4 in a delivery that crashed; "fresh" never ran
    stage = await run_stage(nodes, payloads, SCHEMAS, ctx, first_attempts={"again": 5})

    assert not stage.failed, [o.error for o in stage.nodes]
    again, fresh = stage.nodes
    assert [a.idempotency_key for a in again.attempts] == [f"{ctx.run_id}/again/5"]
    assert again.attempts[0].bundle == ctx.data_dir / "runs" / ctx.run_id / "1" / "again" / "5"
    assert [a.attempt for a in fresh.attempts] == [1]


async def test_first_attempt_below_one_is_refused(ctx: ExecutionContext) -> None:
    echo = node("echo", "echo.nu", produces=("result",))
    with pytest.raises(ValueError, match="first attempt"):
        await run_node(echo, {"inputs": {"value": 1}}, SCHEMAS, ctx, first_attempt=0)
    with pytest.raises(ValueError, match="first attempt"):
        await run_stage([echo], {"echo": {}}, SCHEMAS, ctx, first_attempts={"echo": 0})
    assert not (ctx.data_dir / "runs").exists()


async def test_compensation_has_its_own_idempotency_key(ctx: ExecutionContext) -> None:
    step = ActionNode(id="deploy", handler=SCRIPTS / "echo.nu", compensate=SCRIPTS / "undo.nu")
    out = await run_compensation(step, {"inputs": {"value": "v1"}}, ctx, attempt=2)
    assert [a.idempotency_key for a in out.attempts] == [f"{ctx.run_id}/deploy/compensate/2"]


# ---------------------------------------------------------------- terminal exit codes


@pytest.mark.parametrize(("code", "attempts"), [(3, 1), (7, 3)])
async def test_terminal_exit_codes_are_not_retried(
    ctx: ExecutionContext, code: int, attempts: int
) -> None:
    policy = RetryPolicy(max=2, backoff=0.01, terminal_exit_codes=[3, 64])
    fail = node("fail", "fail.nu", retries=policy)
    payload = {"inputs": {"delay_ms": 0, "message": "bad input", "code": code}}

    out = await run_node(fail, payload, SCHEMAS, ctx)

    assert out.status == "failed" and len(out.attempts) == attempts
    assert [a.retryable for a in out.attempts] == [code != 3] * attempts
    suffix = "(terminal: not retried)" if code == 3 else "(after 3 attempts)"
    assert out.error == f"node fail: exit code {code}: bad input {suffix}"


async def test_terminal_exit_codes_declared_in_nickel(
    ctx: ExecutionContext, tmp_path: Path
) -> None:
    definitions = tmp_path / "definitions"
    write_script(definitions, "refuse.nu", '    print -e "refused"\n    exit 64')
    (definitions / "refuse.ncl").write_text(
        'let s = import "stratum.ncl" in\n'
        '{ nodes = [ { id = "refuse", handler = "refuse.nu",\n'
        "    retries = { max = 3, backoff = 0.01, terminal_exit_codes = [64] } } ] }\n"
        "| s.Workflow\n"
    )
    graph = load_graph(definitions, ROOT / "nickel" / "lib")
    refuse = graph.nodes["refuse"]
    assert refuse.retries.terminal_exit_codes == (64,)

    out = await run_node(refuse, {}, graph.schemas, ctx)

    assert out.status == "failed" and len(out.attempts) == 1
    assert out.error == "node refuse: exit code 64: refused (terminal: not retried)"


# ---------------------------------------------------------------- bounded output


async def test_huge_output_is_bounded_logged_and_fails_the_node(
    ctx: ExecutionContext, tmp_path: Path
) -> None:
    mib = 1024 * 1024
    body = """
    let line = ("" | fill -c "x" -w 1048575) + "\\n"
    for _ in 1..50 { print -n $line }
    for _ in 1..20 { print -e -n $line }
"""
    big = ActionNode(
        id="big",
        handler=write_script(tmp_path / "scripts", "big.nu", body),
        produces=("result",),
        retries=RetryPolicy(max=2, backoff=0),
        timeout=60,
    )
    started = time.monotonic()
    out = await run_node(big, {}, SCHEMAS, ctx)

    assert time.monotonic() - started < 30, "50 MiB must be drained, not deadlock"
    assert out.status == "failed" and len(out.attempts) == 1, "too much output is terminal"
    assert out.error == (
        f"node big: output exceeds {STDOUT_LIMIT} bytes ({50 * mib}) (terminal: not retried)"
    )
    bundle = out.attempts[0].bundle
    manifest = orjson.loads((bundle / "manifest.json").read_bytes())
    assert manifest["bytes"]["stdout"] == 50 * mib and manifest["bytes"]["stderr"] == 20 * mib
    assert manifest["truncated"] == {"stdout": True, "stderr": True}
    line = b"x" * (mib - 1) + b"\n"
    assert manifest["sha256"]["stdout"] == hashlib.sha256(line * 50).hexdigest()
    assert (bundle / "stdout.log").stat().st_size == LOG_LIMIT
    assert (bundle / "stderr.log").stat().st_size == LOG_LIMIT
    assert (bundle / "stdout.log").read_bytes()[: 2 * mib] == line * 2


async def test_run_process_keeps_only_a_bounded_part_in_memory(tmp_path: Path) -> None:
    result = await run_process(
        ["sh", "-c", "head -c 20000000 /dev/zero; head -c 3000000 /dev/zero >&2"],
        stdin=b"",
        env={"PATH": os.environ["PATH"]},
        cwd=tmp_path,
        timeout=30,
    )
    assert result.returncode == 0
    assert len(result.stdout) == STDOUT_LIMIT and len(result.stderr) == STDERR_TAIL
    assert (result.stdout_stats.size, result.stderr_stats.size) == (20_000_000, 3_000_000)


@pytest.mark.parametrize("code", [0, 1])
async def test_binary_garbage_output_gives_one_line_errors(
    ctx: ExecutionContext, tmp_path: Path, code: int
) -> None:
    body = f"""
    ^sh -c 'head -c 200000 /dev/urandom; head -c 20000 /dev/urandom >&2'
    exit {code}
"""
    noisy = ActionNode(
        id="noisy",
        handler=write_script(tmp_path / "scripts", "noisy.nu", body),
        produces=("result",),
    )
    out = await run_node(noisy, {}, SCHEMAS, ctx)

    assert out.status == "failed" and len(out.attempts) == 1
    error = out.attempts[0].error
    assert error is not None and "\n" not in error and len(error) < 400
    if code == 0:
        assert error.startswith("node noisy: stdout is not JSON")
    else:
        assert error.startswith("node noisy: exit code 1: ")
    bundle = out.attempts[0].bundle
    manifest = orjson.loads((bundle / "manifest.json").read_bytes())
    assert manifest["bytes"]["stdout"] == 200_000 and manifest["bytes"]["stderr"] == 20_000
    assert manifest["truncated"] == {"stdout": False, "stderr": False}
    assert manifest["error"] == error
    assert (bundle / "stdout.log").stat().st_size >= 200_000 - 100  # masking may shorten
