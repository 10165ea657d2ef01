"""JSON logs on stderr, one object per line (the `extra` fields included).

Every line logged while a message is handled also carries that message's `tenant`,
`run_id` and `function` (`log_context`, set by the runner per message and inherited by
the tasks it starts), so a tenant's lines can be found without each call naming it.
"""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar
from typing import Any

import orjson

from stratum.clock import iso, utc_now

_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}
log_context: ContextVar[dict[str, str]] = ContextVar("stratum_log_context", default={})  # noqa: B039


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": iso(utc_now()),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry |= log_context.get()
        entry |= {k: v for k, v in record.__dict__.items() if k not in _STANDARD}
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def setup_logging(level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
