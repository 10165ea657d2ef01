"""Logs on stderr: JSON, one object per line; a readable line per record on a terminal.

Every line logged while a message is handled also carries that message's `tenant`,
`run_id` and `function` (`log_context`, set by the runner per message and inherited by
the tasks it starts; a node's task adds `node`), and the `trace_id`/`span_id` of the span
it was logged in (tracing off: of the span that sent the message, if its publisher traced
it), so a line can be joined to its trace. Fields whose names say they hold
a credential are masked whatever their value (`masked` applies the same rule to anything
else Stratum shows, such as a node's outputs).
"""

from __future__ import annotations

import logging
import re
import sys
from contextvars import ContextVar
from typing import Any, TextIO

import orjson

from stratum.clock import iso, utc_now
from stratum.telemetry import tracing

_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}
log_context: ContextVar[dict[str, str]] = ContextVar("stratum_log_context", default={})  # noqa: B039
# names of fields that may only ever hold a masked value
_SECRET_NAME = re.compile(r"(secret|token|password|passwd|seed|authorization)", re.I)
REDACTED = "[redacted]"


def secret_name(name: str) -> bool:
    """Whether a field's name says it holds a credential: its value is never shown."""
    return _SECRET_NAME.search(name) is not None


def masked(value: Any) -> Any:
    """`value` with every field, at any depth, whose name says it holds a credential
    replaced by REDACTED."""
    if isinstance(value, dict):
        return {k: REDACTED if secret_name(str(k)) else masked(v) for k, v in value.items()}
    if isinstance(value, list):
        return [masked(item) for item in value]
    return value


def log_fields(record: logging.LogRecord) -> dict[str, Any]:
    """What a record says: time (UTC), level, logger, message, the message's context, its
    trace and span, and the record's own `extra` fields (masked where they must be)."""
    entry: dict[str, Any] = {
        "ts": iso(utc_now()),
        "level": record.levelname.lower(),
        "logger": record.name,
        "msg": record.getMessage(),
    }
    entry |= log_context.get()
    if trace_id := tracing.trace_id():
        entry["trace_id"] = trace_id
        entry["span_id"] = tracing.span_id()
    for key, value in record.__dict__.items():
        if key not in _STANDARD:
            entry[key] = REDACTED if secret_name(key) else value
    return entry


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = log_fields(record)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


class ConsoleFormatter(logging.Formatter):
    """For a person at a terminal: time, level, function and run first, the rest after."""

    _LEAD = ("ts", "level", "logger", "msg", "function", "run_id")

    def format(self, record: logging.LogRecord) -> str:
        entry = log_fields(record)
        where = "/".join(str(entry[k]) for k in ("function", "run_id") if entry.get(k))
        rest = " ".join(f"{k}={v}" for k, v in entry.items() if k not in self._LEAD)
        line = f"{entry['ts'][11:23]} {entry['level'].upper():7} {where or entry['logger']}"
        line += f"  {entry['msg']}" + (f"  {rest}" if rest else "")
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def setup_logging(level: int = logging.INFO, stream: TextIO | None = None) -> None:
    """JSON lines, or readable lines when `stream` (stderr) is a terminal."""
    stream = stream or sys.stderr
    handler = logging.StreamHandler(stream)
    handler.setFormatter(ConsoleFormatter() if stream.isatty() else JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
