"""Running one node: attempts with retries, a bundle per attempt, a single outcome.

Retry policy follows the failure: a non-zero exit or a timeout may be transient, so it is
retried per `node.retries`; unusable or oversized output is a script bug and an exit code
the node lists in `retries.terminal_exit_codes` is its own "do not retry", so either ends
the node at once.

A node that declares `secrets` gets them per attempt from the caller's `credentials` hook:
obtained before the script starts, released (revoked) when the attempt ends, whatever ends
it; their values reach that process's environment and are masked in everything written.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from jsonschema import Draft202012Validator

from stratum.errors import CredentialsError, DefinitionError, DependencyUnavailableError
from stratum.graph.model import ActionNode
from stratum.telemetry import tracing
from stratum.telemetry.logs import log_context

from ._text import Redactor, secret_forms, stderr_summary
from .bundle import attempt_dir, close_bundle, compensation_dir, log_paths, open_bundle
from .capture import STDERR_TAIL, STDOUT_LIMIT, Capture, StreamStats
from .credentials import Credentials, CredentialsHook, credentials_for
from .environment import node_env
from .models import AttemptRecord, ExecutionContext, NodeOutcome, Status
from .orphans import GroupLabel
from .process import GroupProcess, ProcessResult
from .validate import OutputError, parse_outputs, validators_for

OnAttempt = Callable[[AttemptRecord], Awaitable[None]]


async def run_node(
    node: ActionNode,
    payload: Mapping[str, Any],
    schemas: Mapping[str, Mapping[str, Any]],
    ctx: ExecutionContext,
    *,
    on_attempt: OnAttempt | None = None,
    first_attempt: int = 1,
    credentials: CredentialsHook | None = None,
) -> NodeOutcome:
    """Run `node.handler` with `payload` as JSON stdin until it succeeds or gives up.

    Attempts are numbered from `first_attempt` (a node run again after a crash goes on
    from the attempts already recorded, so bundles and idempotency keys stay distinct);
    backoff still counts from this run's first attempt. Raises `DefinitionError` (before
    running anything) if a produced capability has no valid schema,
    `DependencyUnavailableError` if nu cannot be started, and re-raises cancellation
    after killing the script's process group. `credentials` supplies each attempt's
    secrets (see `stratum.executor.credentials`); a node that declares secrets fails
    without it.
    """
    run = NodeRun(node, ctx, on_attempt, credentials)
    return await run.handler(payload, schemas, first_attempt)


async def run_compensation(
    node: ActionNode,
    payload: Mapping[str, Any],
    ctx: ExecutionContext,
    *,
    attempt: int = 1,
    on_attempt: OnAttempt | None = None,
    credentials: CredentialsHook | None = None,
) -> NodeOutcome:
    """Run `node.compensate` once (the saga decides about repeats and passes `attempt`).

    Its stdout is not checked, only kept in the bundle under `runs/<run>/compensate/`. The
    undo gets the node's secrets as the handler does (`credentials`).
    """
    if node.compensate is None:
        raise DefinitionError(f"node {node.id}: has no compensate script")
    return await NodeRun(node, ctx, on_attempt, credentials).compensation(payload, attempt)


@dataclass(frozen=True, slots=True)
class _Try:
    """One attempt in the making: where it writes, what it runs with, what it masks."""

    script: Path
    directory: Path
    number: int
    key: str
    stdin: bytes
    redactor: Redactor
    env: Mapping[str, str]
    lease: str | None


def _redactor(values: Iterable[str]) -> Redactor:
    """Masks `values` in every form a script is likely to print them in."""
    return Redactor(form for value in values for form in secret_forms(value))


class NodeRun:
    """The state of one node's run, kept outside the task so that a cancelled run can
    still report the attempts it made (see `stage.run_stage`)."""

    def __init__(
        self,
        node: ActionNode,
        ctx: ExecutionContext,
        on_attempt: OnAttempt | None,
        credentials: CredentialsHook | None = None,
    ):
        self.node = node
        self.ctx = ctx
        self.on_attempt = on_attempt
        self.credentials = credentials
        self.attempts: list[AttemptRecord] = []
        self.started_at = datetime.now(UTC)
        self._redactor = _redactor(ctx.extra_env.values())

    def outcome(
        self, status: Status, *, error: str | None = None, outputs: dict[str, Any] | None = None
    ) -> NodeOutcome:
        """The node's outcome from the attempts made so far."""
        digest = None
        if outputs is not None:
            canonical = orjson.dumps(outputs, option=orjson.OPT_SORT_KEYS)
            digest = hashlib.sha256(canonical).hexdigest()
        return NodeOutcome(
            node_id=self.node.id,
            status=status,
            attempts=list(self.attempts),
            outputs=outputs or {},
            outputs_hash=digest,
            error=error,
            started_at=self.started_at,
            finished_at=datetime.now(UTC),
        )

    async def handler(
        self,
        payload: Mapping[str, Any],
        schemas: Mapping[str, Mapping[str, Any]],
        first_attempt: int = 1,
    ) -> NodeOutcome:
        """Attempts of the handler, per the node's retry policy, numbered from
        `first_attempt`."""
        node = self.node
        if first_attempt < 1:
            raise ValueError(f"node {node.id}: first attempt must be 1 or more")
        log_context.set(log_context.get() | {"node": node.id})  # this node's task only
        validators = validators_for(node.id, node.produces, schemas)
        if not node.handler.is_file():
            return self.outcome(
                "failed", error=f"node {node.id}: handler not found: {node.handler}"
            )
        stdin = orjson.dumps(payload)
        total = node.retries.max + 1
        for index in range(1, total + 1):
            delay = node.retries.delay_before(index)
            if delay > 0:
                await asyncio.sleep(delay)
            number = first_attempt + index - 1
            directory = attempt_dir(
                self.ctx.data_dir, self.ctx.run_id, self.ctx.stage, node.id, number
            )
            key = f"{self.ctx.run_id}/{node.id}/{number}"
            record, outputs = await self._attempt(
                node.handler, directory, number, key, stdin, validators
            )
            if record.status == "succeeded":
                return self.outcome("succeeded", outputs=outputs)
            if not record.retryable:
                return self.outcome("failed", error=f"{record.error} (terminal: not retried)")
        plural = "s" if total > 1 else ""
        return self.outcome("failed", error=f"{record.error} (after {total} attempt{plural})")

    async def compensation(self, payload: Mapping[str, Any], number: int) -> NodeOutcome:
        """One run of the compensation script, output unchecked."""
        node = self.node
        assert node.compensate is not None  # checked by run_compensation
        directory = compensation_dir(self.ctx.data_dir, self.ctx.run_id, node.id, number)
        # not the handler's key: a service must not take the undo for a repeat of the do
        key = f"{self.ctx.run_id}/{node.id}/compensate/{number}"
        record, _ = await self._attempt(
            node.compensate, directory, number, key, orjson.dumps(payload), None
        )
        return self.outcome(record.status, error=record.error)

    async def _attempt(
        self,
        script: Path,
        directory: Path,
        number: int,
        key: str,
        stdin: bytes,
        validators: Mapping[str, Draft202012Validator] | None,
    ) -> tuple[AttemptRecord, dict[str, Any] | None]:
        """One attempt in a span of its own (`execute NODE`, or `compensate NODE` for a
        compensation script, which has no `validators`): node, attempt, exit status."""
        kind = "execute" if validators is not None else "compensate"
        base = _Try(script, directory, number, key, stdin, self._redactor, {}, None)
        with tracing.span(
            f"{kind} {self.node.id}",
            {
                "stratum.node.id": self.node.id,
                "stratum.node.attempt": number,
                "stratum.stage": self.ctx.stage,
                "stratum.run_id": self.ctx.run_id,
                "stratum.tenant": self.ctx.tenant,
            },
        ) as span:
            record, outputs = await self._with_credentials(base, validators)
            span.set_attribute("stratum.node.status", record.status)
            span.set_attribute("stratum.node.duration_ms", record.duration_ms)
            if record.exit_code is not None:
                span.set_attribute("process.exit.code", record.exit_code)
            if record.signal:
                span.set_attribute("stratum.node.signal", record.signal)
            if record.timed_out:
                span.set_attribute("stratum.node.timed_out", True)
            if record.status != "succeeded":
                tracing.failed(span, record.error or record.status)
            return record, outputs

    async def _with_credentials(
        self, base: _Try, validators: Mapping[str, Draft202012Validator] | None
    ) -> tuple[AttemptRecord, dict[str, Any] | None]:
        """The attempt inside its credentials: they are released (revoked) on the way
        out, after the attempt is recorded, whether it ended or was cancelled."""
        entered = False
        try:
            async with credentials_for(self.credentials, self.node, base.key) as credentials:
                entered = True
                return await self._run(self._with(base, credentials), validators)
        except CredentialsError as exc:
            if entered:  # a hook must not fail its release: the attempt is recorded
                raise
            return await self._without_process(base, exc), None

    def _with(self, base: _Try, credentials: Credentials) -> _Try:
        """The attempt's environment, its secrets in it, and a redactor that knows them."""
        ctx, redactor = self.ctx, base.redactor
        if credentials.env:
            clash = sorted(ctx.extra_env.keys() & credentials.env.keys())
            if clash:
                raise ValueError(f"node {self.node.id}: extra_env and secrets both set {clash}")
            redactor = _redactor([*ctx.extra_env.values(), *credentials.env.values()])
        env = node_env(
            path=ctx.nu_path,
            workspace=ctx.workspace_dir,
            bundle=base.directory,
            run_id=ctx.run_id,
            tenant=ctx.tenant,
            node_id=self.node.id,
            stage=ctx.stage,
            attempt=base.number,
            idempotency_key=base.key,
            extra_env={**ctx.extra_env, **credentials.env},
            trace=tracing.current_headers(),
        )
        return replace(base, redactor=redactor, env=env, lease=credentials.lease)

    async def _run(
        self, attempt: _Try, validators: Mapping[str, Draft202012Validator] | None
    ) -> tuple[AttemptRecord, dict[str, Any] | None]:
        ctx, node, redactor = self.ctx, self.node, attempt.redactor
        # off the event loop: folders and files cost metadata writes, and siblings start too
        await asyncio.to_thread(
            _open_attempt, ctx.workspace_dir, attempt.directory, redactor.data(attempt.stdin)[0]
        )
        stdout_log, stderr_log = log_paths(attempt.directory)
        head = STDOUT_LIMIT if validators is not None else 0  # a compensation's is not read
        proc = GroupProcess(
            self._argv(attempt.script),
            env=attempt.env,
            cwd=ctx.workdir,
            kill_grace=ctx.kill_grace,
            stdout=Capture(head_limit=head, log=stdout_log, redact=redactor.stream()),
            stderr=Capture(tail_limit=STDERR_TAIL, log=stderr_log, redact=redactor.stream()),
            label=GroupLabel(ctx.data_dir, ctx.run_id, node.id, attempt.number),
        )
        try:
            result = await proc.run(attempt.stdin, node.timeout)
        except asyncio.CancelledError:
            if proc.result is not None:
                cancelled = f"node {node.id}: cancelled"
                await self._record(attempt, proc.result, "cancelled", cancelled)
            raise
        except OSError as exc:
            raise DependencyUnavailableError(
                f"node {node.id}: cannot start nu ({ctx.nu_bin}): {exc.strerror or exc}"
            ) from exc

        error, retryable, outputs = self._judge(result, validators, redactor)
        status: Status = "failed" if error else "succeeded"
        record = await self._record(attempt, result, status, error, retryable=retryable)
        return record, outputs

    def _argv(self, script: Path) -> tuple[str, ...]:
        return (str(self.ctx.nu_bin), "--no-config-file", "--stdin", str(script))

    async def _without_process(self, attempt: _Try, exc: CredentialsError) -> AttemptRecord:
        """A failed attempt whose script never started: its secrets were not to be had."""
        open_bundle(attempt.directory, attempt.redactor.data(attempt.stdin)[0])
        now = datetime.now(UTC)
        empty = StreamStats(0, hashlib.sha256().hexdigest(), 0, False, False)
        argv = self._argv(attempt.script)
        result = ProcessResult(argv, None, b"", b"", empty, empty, False, False, now, now, 0.0)
        error = f"node {self.node.id}: secrets: {exc}"
        return await self._record(attempt, result, "failed", error, retryable=exc.retryable)

    def _judge(
        self,
        result: ProcessResult,
        validators: Mapping[str, Draft202012Validator] | None,
        redactor: Redactor,
    ) -> tuple[str | None, bool, dict[str, Any] | None]:
        """(error, retryable, outputs) of a finished process."""
        node = self.node
        if result.timed_out:
            return f"node {node.id}: timed out after {node.timeout:g}s", True, None
        if result.returncode != 0:
            how = (
                f"exit code {result.exit_code}"
                if result.exit_code is not None
                else f"killed by {result.signal}"
            )
            # stderr is the masked tail of the stream: a secret cut in two is still masked
            summary = stderr_summary(result.stderr)
            terminal = result.exit_code in node.retries.terminal_exit_codes
            return f"node {node.id}: {how}: {summary}", not terminal, None
        if validators is None:  # a compensation: output is kept, not judged
            return None, False, {}
        if result.stdout_stats.size > STDOUT_LIMIT:
            size = result.stdout_stats.size
            return f"node {node.id}: output exceeds {STDOUT_LIMIT} bytes ({size})", False, None
        try:
            outputs = parse_outputs(node.id, result.stdout, validators, redact=redactor.text)
        except OutputError as exc:
            return str(exc), exc.retryable, None
        # capabilities are stored and handed on: a secret must not travel as one
        if redactor and redactor.found(orjson.dumps(outputs)):
            return f"node {node.id}: its outputs contain a secret value", False, None
        return None, False, outputs

    async def _record(
        self,
        attempt: _Try,
        result: ProcessResult,
        status: Status,
        error: str | None,
        *,
        retryable: bool = False,
    ) -> AttemptRecord:
        """Write the bundle, keep the record, tell the caller."""
        if error is not None:
            error = attempt.redactor.text(error)
        manifest = functools.partial(
            close_bundle,
            attempt.directory,
            result,
            stdin=attempt.stdin,
            cwd=self.ctx.workdir,
            env_names=list(attempt.env.keys()),
            outcome=status,
            error=error,
            extra={
                "run_id": self.ctx.run_id,
                "tenant": self.ctx.tenant,
                "stage": self.ctx.stage,
                "node": self.node.id,
                "attempt": attempt.number,
                "idempotency_key": attempt.key,
                "retryable": retryable and status == "failed",
                "credential_lease": attempt.lease,
            },
        )
        # written in a thread; shielded, so a cancellation meanwhile still leaves it written
        await asyncio.shield(asyncio.to_thread(manifest))
        record = AttemptRecord(
            attempt=attempt.number,
            idempotency_key=attempt.key,
            status=status,
            exit_code=result.exit_code,
            signal=result.signal,
            timed_out=result.timed_out,
            error=error,
            retryable=retryable and status == "failed",
            started_at=result.started_at,
            finished_at=result.finished_at,
            duration_ms=result.duration_ms,
            bundle=attempt.directory,
            credential_lease=attempt.lease,
        )
        self.attempts.append(record)
        if self.on_attempt is not None:
            await self.on_attempt(record)
        return record


def _open_attempt(workspace: Path, directory: Path, stdin: bytes) -> None:
    workspace.mkdir(parents=True, exist_ok=True)
    open_bundle(directory, stdin)
