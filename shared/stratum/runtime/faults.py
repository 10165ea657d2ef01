"""Named crash points, for the tests that prove Stratum survives dying anywhere.

`STRATUM_CRASH_AT="planner.after-commit:3,stage-executor.node-recorded:1"` makes the
process kill itself with SIGKILL — no cleanup, no flush, as a power cut would — the n-th
time it passes that point. Unset (always, outside such tests), a crash point is one dict
lookup.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

ENV = "STRATUM_CRASH_AT"


def _parse(spec: str) -> dict[str, int]:
    plan = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, nth = item.rpartition(":")
        plan[name] = int(nth)
    return plan


_plan = _parse(os.environ.get(ENV, ""))
_passed: Counter[str] = Counter()


def crash_point(name: str) -> None:
    """Die here if the crash plan says so (see the module docstring)."""
    nth = _plan.get(name)
    if nth is None:
        return
    _passed[name] += 1
    if _passed[name] == nth:
        os.kill(os.getpid(), signal.SIGKILL)
