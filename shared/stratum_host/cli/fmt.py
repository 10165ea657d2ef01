"""The small formatting pieces every CLI view shares: durations and status colours."""

from __future__ import annotations

from rich.text import Text

STATUS_STYLE = {
    "Succeeded": "green",
    "succeeded": "green",
    "Compensated": "yellow",
    "Compensating": "yellow",
    "CompensationFailed": "red",
    "Failed": "red",
    "failed": "red",
    "cancelled": "magenta",
    "Cancelled": "magenta",
    "Cancelling": "magenta",
    "Held": "yellow",
    "Running": "cyan",
    "running": "cyan",
    "Planned": "blue",
    "Accepted": "blue",
    "Denied": "red",
    "skipped": "dim",
    "pending": "dim",
}


def status_text(status: str) -> Text:
    return Text(status, style=STATUS_STYLE.get(status, ""))


def ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.0f} ms" if value < 10_000 else f"{value / 1000:.1f} s"


def offset(value: float | None) -> str:
    """A time from a run's start: `+120 ms`, `+12.5 s`."""
    return "-" if value is None else f"+{ms(value)}"


def count(value: float) -> str:
    """A Prometheus sample (always a float) as people count: `3`, not `3.0`."""
    return f"{value:.0f}" if value == int(value) else f"{value:.2f}"
