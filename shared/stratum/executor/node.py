"""Running one node: attempts with retries, a bundle per attempt, a single outcome.

Retry policy follows the failure: a non-zero exit or a timeout may be transient, so it is
retried per `node.retries`; unusable or oversized output is a script bug and an exit code
the node lists in `retries.terminal_exit_codes` is its own "do not retry", so either ends
the node at once.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from jsonschema import Draft202012Validator

from stratum.errors import DefinitionError, DependencyUnavailableError
from stratum.graph.model import ActionNode

from ._text import Redactor, stderr_summary
from .bundle import attempt_dir, close_bundle, compensation_dir, log_paths, open_bundle
from .capture import STDERR_TAIL, STDOUT_LIMIT, Capture
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
) -> NodeOutcome:
    """Run `node.handler` with `payload` as JSON stdin until it succeeds or gives up.

    Attempts are numbered from `first_attempt` (a node run again after a crash goes on
    from the attempts already recorded, so bundles and idempotency keys stay distinct);
    backoff still counts from this run's first attempt. Raises `DefinitionError` (before
    running anything) if a produced capability has no valid schema,
    `DependencyUnavailableError` if nu cannot be started, and re-raises cancellation
    after killing the script's process group.
    """
    return await NodeRun(node, ctx, on_attempt).handler(payload, schemas, first_attempt)


async def run_compensation(
    node: ActionNode,
    payload: Mapping[str, Any],
    ctx: ExecutionContext,
    *,
    attempt: int = 1,
    on_attempt: OnAttempt | None = None,
) -> NodeOutcome:
    """Run `node.compensate` once (the saga decides about repeats and passes `attempt`).

    Its stdout is not checked, only kept in the bundle under `runs/<run>/compensate/`.
    """
    if node.compensate is None:
        raise DefinitionError(f"node {node.id}: has no compensate script")
    return await NodeRun(node, ctx, on_attempt).compensation(payload, attempt)


class NodeRun:
    """The state of one node's run, kept outside the task so that a cancelled run can
    still report the attempts it made (see `stage.run_stage`)."""

    def __init__(self, node: ActionNode, ctx: ExecutionContext, on_attempt: OnAttempt | None):
        self.node = node
        self.ctx = ctx
        self.on_attempt = on_attempt
        self.attempts: list[AttemptRecord] = []
        self.started_at = datetime.now(UTC)
        self._redactor = Redactor(ctx.extra_env.values())

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
        ctx, node = self.ctx, self.node
        ctx.workspace_dir.mkdir(parents=True, exist_ok=True)
        open_bundle(directory, self._redactor.data(stdin)[0])
        env = node_env(
            path=ctx.nu_path,
            workspace=ctx.workspace_dir,
            bundle=directory,
            run_id=ctx.run_id,
            tenant=ctx.tenant,
            node_id=node.id,
            stage=ctx.stage,
            attempt=number,
            idempotency_key=key,
            extra_env=ctx.extra_env,
        )
        argv = (str(ctx.nu_bin), "--no-config-file", "--stdin", str(script))
        stdout_log, stderr_log = log_paths(directory)
        head = STDOUT_LIMIT if validators is not None else 0  # a compensation's is not read
        proc = GroupProcess(
            argv,
            env=env,
            cwd=ctx.workdir,
            kill_grace=ctx.kill_grace,
            stdout=Capture(head_limit=head, log=stdout_log, redact=self._redactor.stream()),
            stderr=Capture(tail_limit=STDERR_TAIL, log=stderr_log, redact=self._redactor.stream()),
            label=GroupLabel(ctx.data_dir, ctx.run_id, node.id, number),
        )
        try:
            result = await proc.run(stdin, node.timeout)
        except asyncio.CancelledError:
            if proc.result is not None:
                cancelled = f"node {node.id}: cancelled"
                await self._record(
                    directory, number, key, proc.result, stdin, env, "cancelled", cancelled
                )
            raise
        except OSError as exc:
            raise DependencyUnavailableError(
                f"node {node.id}: cannot start nu ({ctx.nu_bin}): {exc.strerror or exc}"
            ) from exc

        error, retryable, outputs = self._judge(result, validators)
        status: Status = "failed" if error else "succeeded"
        record = await self._record(
            directory, number, key, result, stdin, env, status, error, retryable=retryable
        )
        return record, outputs

    def _judge(
        self, result: ProcessResult, validators: Mapping[str, Draft202012Validator] | None
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
            outputs = parse_outputs(node.id, result.stdout, validators, redact=self._redactor.text)
        except OutputError as exc:
            return str(exc), exc.retryable, None
        return None, False, outputs

    async def _record(
        self,
        directory: Path,
        number: int,
        key: str,
        result: ProcessResult,
        stdin: bytes,
        env: Mapping[str, str],
        status: Status,
        error: str | None,
        *,
        retryable: bool = False,
    ) -> AttemptRecord:
        """Write the bundle, keep the record, tell the caller."""
        if error is not None:
            error = self._redactor.text(error)
        close_bundle(
            directory,
            result,
            stdin=stdin,
            cwd=self.ctx.workdir,
            env_names=env.keys(),
            outcome=status,
            error=error,
            extra={
                "run_id": self.ctx.run_id,
                "tenant": self.ctx.tenant,
                "stage": self.ctx.stage,
                "node": self.node.id,
                "attempt": number,
                "idempotency_key": key,
                "retryable": retryable and status == "failed",
            },
        )
        record = AttemptRecord(
            attempt=number,
            idempotency_key=key,
            status=status,
            exit_code=result.exit_code,
            signal=result.signal,
            timed_out=result.timed_out,
            error=error,
            retryable=retryable and status == "failed",
            started_at=result.started_at,
            finished_at=result.finished_at,
            duration_ms=result.duration_ms,
            bundle=directory,
        )
        self.attempts.append(record)
        if self.on_attempt is not None:
            await self.on_attempt(record)
        return record
