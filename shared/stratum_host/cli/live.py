"""Screens that redraw in place: `emit --wait` following its run, and `stratum top`.

Only for a terminal: the callers keep their plain output for pipes and `--json`, so
scripts and tests see exactly what they saw before.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.text import Text

from stratum_host.cli import render
from stratum_host.cli.top import Snapshot, top_view

View = dict[str, Any]


def follow_run(console: Console, run: str, wait: Callable[[Callable[[View], None]], View]) -> View:
    """Run `wait` (which polls the run and calls back with each view it reads) while the
    run's timeline redraws, growing its running nodes' bars up to now. The screen is
    cleared at the end: the caller prints the finished run once, as `show` would."""
    waiting = Text(f"waiting for {run} to be accepted ...", style="dim")
    with Live(waiting, console=console, transient=True, refresh_per_second=8) as screen:

        def show(view: View) -> None:
            screen.update(render.run_detail(view, now=datetime.now(UTC)))

        return wait(show)


def watch_top(console: Console, read: Callable[[], Snapshot], interval: float, where: str) -> None:
    """Redraw `stratum top` every `interval` seconds until Ctrl-C."""

    def screen_of(snap: Snapshot) -> Any:
        return top_view(snap, f"{where}  {datetime.now().strftime('%H:%M:%S')}")

    try:
        with Live(screen_of(read()), console=console, auto_refresh=False) as screen:
            while True:
                time.sleep(interval)
                screen.update(screen_of(read()), refresh=True)
    except KeyboardInterrupt:
        return
