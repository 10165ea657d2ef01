"""Run one child process in its own process group and never leave any of it behind.

A node script may start helpers (`^sleep`, `sh -c '... &'`). Killing only the direct child
would orphan them, so the child leads a new session (`start_new_session=True`) and every way
out — timeout, cancellation, even a normal exit — signals the whole group. While it runs,
the group is registered under `<data_dir>/proc/` (see `orphans`) when given a label.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

from .capture import STDERR_TAIL, STDOUT_LIMIT, Capture, StreamStats
from .children import watch_children_by_pidfd
from .orphans import GroupLabel, register, unregister


@dataclass(frozen=True, slots=True)
class ProcessResult:
    """What one process did. `returncode` is negative when a signal ended it (asyncio's
    convention) and None only if a second cancellation interrupted the reaping.

    `stdout` is the start of its stdout (at most `STDOUT_LIMIT` bytes by default) and
    `stderr` the end of its stderr (`STDERR_TAIL`, masked); the stats cover all of each.
    """

    argv: tuple[str, ...]
    returncode: int | None
    stdout: bytes
    stderr: bytes
    stdout_stats: StreamStats
    stderr_stats: StreamStats
    timed_out: bool
    cancelled: bool
    started_at: datetime
    finished_at: datetime
    duration_ms: float

    @property
    def exit_code(self) -> int | None:
        """The exit status, or None when a signal (or nothing known) ended the process."""
        rc = self.returncode
        return rc if rc is not None and rc >= 0 else None

    @property
    def signal(self) -> str | None:
        """Name of the signal that ended the process (`SIGTERM`), if one did."""
        rc = self.returncode
        if rc is None or rc >= 0:
            return None
        try:
            return signal.Signals(-rc).name
        except ValueError:
            return f"signal {-rc}"


def signal_group(pgid: int, sig: int) -> bool:
    """Send `sig` to a process group; False when the group no longer exists."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    return True


class _Collector(asyncio.SubprocessProtocol):
    """Collects output as it arrives and reports the leader's exit on its own.

    Not `Process.wait()`: on Python 3.11 it also waits for the pipes to close, which a
    background grandchild holding stdout would delay until the timeout.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, stdout: Capture, stderr: Capture) -> None:
        self.stdout = stdout
        self.stderr = stderr
        self.exited: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()

    def pipe_data_received(self, fd: int, data: bytes | str) -> None:
        sink = self.stdout if fd == 1 else self.stderr
        sink.write(data.encode() if isinstance(data, str) else data)

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        # Called once the process has exited and every pipe is closed.
        if not self.closed.done():
            self.closed.set_result(None)


class GroupProcess:
    """One run of `argv` with a timeout, whose result survives cancellation.

    `run()` re-raises `asyncio.CancelledError` as asyncio requires, so the result of a
    cancelled run (exit status, partial output) is left in `result` for the caller's record.
    `stdout`/`stderr` say where output goes (default: memory only, bounded); with a
    `label` the group is registered for `sweep_orphans` while it runs.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        cwd: Path,
        kill_grace: float = 1.0,
        stdout: Capture | None = None,
        stderr: Capture | None = None,
        label: GroupLabel | None = None,
    ) -> None:
        self.argv = tuple(argv)
        self.env = dict(env)
        self.cwd = cwd
        self.kill_grace = kill_grace
        self.stdout = stdout or Capture(head_limit=STDOUT_LIMIT)
        self.stderr = stderr or Capture(tail_limit=STDERR_TAIL)
        self.label = label
        self.result: ProcessResult | None = None
        self._killed = False

    async def run(self, stdin: bytes, timeout: float) -> ProcessResult:
        """Feed `stdin`, drain stdout/stderr, stop the group after `timeout` s."""
        loop = asyncio.get_running_loop()
        watch_children_by_pidfd()
        started_at = datetime.now(UTC)
        t0 = time.monotonic()
        try:
            transport, proto = await loop.subprocess_exec(
                lambda: _Collector(loop, self.stdout, self.stderr),
                *self.argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
            )
        except BaseException:
            self.stdout.close()
            self.stderr.close()
            raise
        pid = transport.get_pid()
        registration: Path | None = None
        # a WriteTransport in spirit; uvloop's pipe transport does not subclass the ABC
        stdin_pipe = cast(asyncio.WriteTransport, transport.get_pipe_transport(0))
        # Buffered by the transport; a script that exits without reading just drops it.
        stdin_pipe.write(stdin)
        stdin_pipe.close()
        timed_out = cancelled = False
        try:
            if self.label is not None:
                registration = register(self.label, pid)
            try:
                async with asyncio.timeout(timeout):
                    await asyncio.shield(proto.exited)
            except TimeoutError:
                timed_out = True
                await self._stop(pid, proto)
            # The script is done: whatever it left running in its group goes too.
            self._kill(pid)
            # Pipes reach EOF once the group is dead; a process that escaped the group
            # (setsid) could hold them open, so the wait is bounded.
            await _wait(proto.closed, self.kill_grace)
        except asyncio.CancelledError:
            cancelled = True
            await self._stop(pid, proto)
            # The group is dead, so EOF is immediate; keep the tail of stderr for the record.
            await _wait(proto.closed, min(self.kill_grace, 0.2))
            raise
        finally:
            self._kill(pid)  # no-op unless a second cancellation cut _stop short
            unregister(registration)  # the group is dead: nothing left to sweep
            transport.close()
            stdout_stats, stderr_stats = self.stdout.close(), self.stderr.close()
            self.result = ProcessResult(
                argv=self.argv,
                returncode=transport.get_returncode(),
                stdout=bytes(self.stdout.head),
                stderr=bytes(self.stderr.tail),
                stdout_stats=stdout_stats,
                stderr_stats=stderr_stats,
                timed_out=timed_out,
                cancelled=cancelled,
                started_at=started_at,
                finished_at=datetime.now(UTC),
                duration_ms=round((time.monotonic() - t0) * 1000, 3),
            )
        return self.result

    async def _stop(self, pid: int, proto: _Collector) -> None:
        """SIGTERM the group, give the leader `kill_grace` s to exit, then SIGKILL it all."""
        if not proto.exited.done():
            signal_group(pid, signal.SIGTERM)
            await _wait(proto.exited, self.kill_grace)
        self._kill(pid)
        # SIGKILL cannot be refused; the bound only guards against a process stuck in the
        # kernel (state D), which nothing can kill.
        await _wait(proto.exited, max(self.kill_grace, 1.0))

    def _kill(self, pgid: int) -> None:
        # Once only: after the leader is reaped its pid could in principle be reused.
        if not self._killed:
            self._killed = True
            signal_group(pgid, signal.SIGKILL)


async def _wait(future: asyncio.Future[None], timeout: float) -> None:
    # shield: giving up on the wait must not cancel the protocol's future itself.
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            await asyncio.shield(future)


async def run_process(
    argv: Sequence[str],
    *,
    stdin: bytes,
    env: Mapping[str, str],
    cwd: Path,
    timeout: float,
    kill_grace: float = 1.0,
) -> ProcessResult:
    """Run `argv` once in its own process group (see `GroupProcess`)."""
    return await GroupProcess(argv, env=env, cwd=cwd, kill_grace=kill_grace).run(stdin, timeout)
