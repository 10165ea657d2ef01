"""Run one child process in its own process group and never leave any of it behind.

A node script may start helpers (`^sleep`, `sh -c '... &'`). Killing only the direct child
would orphan them, so the child leads a new session (`start_new_session=True`) and every way
out — timeout, cancellation, even a normal exit — signals the whole group.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

_CHUNK = 1 << 16


@dataclass(frozen=True, slots=True)
class ProcessResult:
    """What one process did. `returncode` is negative when a signal ended it (asyncio's
    convention) and None only if a second cancellation interrupted the reaping."""

    argv: tuple[str, ...]
    returncode: int | None
    stdout: bytes
    stderr: bytes
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


class GroupProcess:
    """One run of `argv` with a timeout, whose result survives cancellation.

    `run()` re-raises `asyncio.CancelledError` as asyncio requires, so the result of a
    cancelled run (exit status, partial output) is left in `result` for the caller's record.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        cwd: Path,
        kill_grace: float = 1.0,
    ) -> None:
        self.argv = tuple(argv)
        self.env = dict(env)
        self.cwd = cwd
        self.kill_grace = kill_grace
        self.result: ProcessResult | None = None
        self._killed = False

    async def run(self, stdin: bytes, timeout: float) -> ProcessResult:
        """Feed `stdin`, capture all of stdout/stderr, stop the group after `timeout` s."""
        started_at = datetime.now(UTC)
        t0 = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            *self.argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self.env,
            cwd=self.cwd,
            start_new_session=True,
        )
        assert proc.stdin and proc.stdout and proc.stderr  # all three are PIPEs
        out, err = bytearray(), bytearray()
        helpers = [
            asyncio.create_task(_feed(proc.stdin, stdin)),
            asyncio.create_task(_drain(proc.stdout, out)),
            asyncio.create_task(_drain(proc.stderr, err)),
        ]
        timed_out = cancelled = False
        try:
            try:
                async with asyncio.timeout(timeout):
                    await proc.wait()
            except TimeoutError:
                timed_out = True
                await self._stop(proc)
            # The script is done: whatever it left running in its group goes too.
            self._kill(proc.pid)
            # Pipes reach EOF once the group is dead; a process that escaped the group
            # (setsid) could hold them open, so the wait is bounded.
            await asyncio.wait(helpers, timeout=self.kill_grace)
        except asyncio.CancelledError:
            cancelled = True
            await self._stop(proc)
            # The group is dead, so EOF is immediate; keep the tail of stderr for the record.
            await asyncio.wait(helpers, timeout=min(self.kill_grace, 0.2))
            raise
        finally:
            self._kill(proc.pid)  # no-op unless a second cancellation cut _stop short
            for task in helpers:
                task.cancel()
            self.result = ProcessResult(
                argv=self.argv,
                returncode=proc.returncode,
                stdout=bytes(out),
                stderr=bytes(err),
                timed_out=timed_out,
                cancelled=cancelled,
                started_at=started_at,
                finished_at=datetime.now(UTC),
                duration_ms=round((time.monotonic() - t0) * 1000, 3),
            )
        return self.result

    async def _stop(self, proc: asyncio.subprocess.Process) -> None:
        """SIGTERM the group, give the leader `kill_grace` s to exit, then SIGKILL it all."""
        if proc.returncode is None:
            signal_group(proc.pid, signal.SIGTERM)
            waiter = asyncio.ensure_future(proc.wait())
            try:
                await asyncio.wait([waiter], timeout=self.kill_grace)
            finally:
                waiter.cancel()
        self._kill(proc.pid)
        if proc.returncode is None:
            await proc.wait()  # SIGKILL cannot be refused; reap so returncode is known

    def _kill(self, pgid: int) -> None:
        # Once only: after the leader is reaped its pid could in principle be reused.
        if not self._killed:
            self._killed = True
            signal_group(pgid, signal.SIGKILL)


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


async def _feed(pipe: asyncio.StreamWriter, data: bytes) -> None:
    # A script that never reads stdin may exit first: a broken pipe is not an error.
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        if data:
            pipe.write(data)
            await pipe.drain()
        pipe.close()
        await pipe.wait_closed()


async def _drain(stream: asyncio.StreamReader, sink: bytearray) -> None:
    # Appends as it goes so a cancelled drain still leaves the partial output in `sink`.
    while chunk := await stream.read(_CHUNK):
        sink += chunk
