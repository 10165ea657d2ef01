"""Learn of a script's exit from the event loop itself, not from a thread per child.

On Python 3.11 asyncio's default child watcher starts a thread for every child process
and blocks the event loop until that thread runs: with the GIL busy (handlers, the
database's callbacks) that costs ~1.5 ms of loop time per script, and each such thread
then competes for the GIL. A pidfd (Linux 5.3+) becomes readable when its process exits,
so the loop watches it like any socket. Python 3.12 does this on its own; this module
brings the same behaviour to 3.11 and changes nothing where it is not needed or possible.
"""

from __future__ import annotations

import asyncio
import os
import sys
import warnings
from collections.abc import Callable
from typing import Any, TypeVarTuple, Unpack

_Ts = TypeVarTuple("_Ts")

_installed = False


class PidfdWatcher(asyncio.AbstractChildWatcher):
    """Reaps each child when its pidfd becomes readable, on the loop that spawned it
    (not one loop fixed at attach time, which a process with several loops over its life,
    such as a test run, would outlive)."""

    def __init__(self) -> None:
        self._watched: dict[int, tuple[asyncio.AbstractEventLoop, int]] = {}

    def add_child_handler(
        self, pid: int, callback: Callable[[int, int, Unpack[_Ts]], object], *args: *_Ts
    ) -> None:
        loop = asyncio.get_running_loop()
        pidfd = os.pidfd_open(pid)
        self._watched[pid] = (loop, pidfd)
        loop.add_reader(pidfd, self._reap, pid, callback, args)

    def _reap(self, pid: int, callback: Callable[..., object], args: tuple[Any, ...]) -> None:
        self._forget(pid)
        try:
            _, status = os.waitpid(pid, 0)
        except ChildProcessError:  # reaped elsewhere: asyncio's convention for "unknown"
            returncode = 255
        else:
            returncode = os.waitstatus_to_exitcode(status)
        callback(pid, returncode, *args)

    def remove_child_handler(self, pid: int) -> bool:
        return self._forget(pid)

    def _forget(self, pid: int) -> bool:
        watched = self._watched.pop(pid, None)
        if watched is None:
            return False
        loop, pidfd = watched
        if not loop.is_closed():
            loop.remove_reader(pidfd)
        os.close(pidfd)
        return True

    def attach_loop(self, loop: asyncio.AbstractEventLoop | None) -> None:
        pass  # each child is watched on the loop that spawned it

    def is_active(self) -> bool:
        return True

    def close(self) -> None:
        for pid in list(self._watched):
            self._forget(pid)

    def __enter__(self) -> PidfdWatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def watch_children_by_pidfd() -> None:
    """Install `PidfdWatcher` once, on Python 3.11 where the kernel has pidfds."""
    global _installed
    if _installed or sys.version_info >= (3, 12) or not hasattr(os, "pidfd_open"):
        return
    _installed = True
    try:
        os.close(os.pidfd_open(os.getpid()))
    except OSError:  # an older kernel, or a sandbox that forbids the call
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        asyncio.set_child_watcher(PidfdWatcher())
