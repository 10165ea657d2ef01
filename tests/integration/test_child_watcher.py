"""The pidfd child watcher against real child processes and the real kernel.

asyncio hands a child's exit to the watcher; these check that what a script's process
result says (exit status, the signal that ended it) survives the change, on more than one
event loop over the process's life, and that no thread is started per child.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
from pathlib import Path

import pytest

from stratum.executor import run_process
from stratum.executor.children import PidfdWatcher, watch_children_by_pidfd

pytestmark = pytest.mark.skipif(
    sys.version_info >= (3, 12) or not hasattr(os, "pidfd_open"),
    reason="Python 3.12+ watches children by pidfd itself",
)


def test_exit_status_and_signal_reach_the_result_on_successive_loops(tmp_path: Path) -> None:
    async def statuses() -> tuple[int | None, str | None, int | None]:
        watch_children_by_pidfd()
        env = {"PATH": os.environ["PATH"]}
        exited = await run_process(
            ["sh", "-c", "exit 7"], stdin=b"", env=env, cwd=tmp_path, timeout=10
        )
        killed = await run_process(
            ["sh", "-c", "kill -TERM $$"], stdin=b"", env=env, cwd=tmp_path, timeout=10
        )
        echoed = await run_process(["cat"], stdin=b"hello", env=env, cwd=tmp_path, timeout=10)
        assert echoed.stdout == b"hello"
        return exited.exit_code, killed.signal, echoed.exit_code

    # asyncio.run makes a new loop each time: the watcher must serve the running one
    for _ in range(2):
        assert asyncio.run(statuses()) == (7, "SIGTERM", 0)
    assert isinstance(asyncio.get_child_watcher(), PidfdWatcher)


def test_no_thread_is_started_per_child(tmp_path: Path) -> None:
    async def spawn_many() -> int:
        watch_children_by_pidfd()
        before = threading.active_count()
        most = before

        async def one() -> None:
            nonlocal most
            process = await asyncio.create_subprocess_exec("sleep", "0.2")
            most = max(most, threading.active_count())
            await process.wait()

        await asyncio.gather(*(one() for _ in range(8)))
        return most - before

    assert asyncio.run(spawn_many()) == 0


def test_a_child_removed_from_watching_is_not_reported() -> None:
    async def removed() -> tuple[bool, bool, list[int]]:
        watcher = PidfdWatcher()
        reported: list[int] = []
        pid = os.spawnlp(os.P_NOWAIT, "sleep", "sleep", "0.1")
        watcher.add_child_handler(pid, lambda _pid, code: reported.append(code))
        first = watcher.remove_child_handler(pid)
        second = watcher.remove_child_handler(pid)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        await asyncio.sleep(0.05)
        return first, second, reported

    assert asyncio.run(removed()) == (True, False, [])
