"""What a run's nodes produced, as the run detail (`/api/runs/{id}`, `stratum show`) shows it.

The values are read from the `capability` table, where the stage executor stored them;
events carry only their hash and stay small. They hold no secret: the executor refuses an
output that contains one of its attempt's secret values (the node fails, nothing is
stored). What is shown is masked once more as the logs are — a field whose name says it
holds a credential shows `[redacted]` (`stratum.telemetry.logs.masked`) — and a value whose JSON is
over `OUTPUT_LIMIT` bytes is cut, saying by how much and where the whole value is: the
stdout of the attempt that produced it, in its bundle.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson
from pydantic import BaseModel

from stratum.telemetry.logs import REDACTED, masked, secret_name

# bytes of JSON per value: a digest, a file list, findings; not a whole log
OUTPUT_LIMIT = 16 * 1024


class Produced(BaseModel):
    """A capability a node produced, and the bundle of the attempt that produced it."""

    node: str
    capability: str
    value: Any
    bundle: str | None = None


def shown(value: Any, bundle: str | None, limit: int = OUTPUT_LIMIT) -> dict[str, Any]:
    """`{"value": v}`, masked; over `limit` bytes of JSON, `{"preview": the first
    `limit` bytes of that JSON, "bytes": its size, "cut": bytes left out, "whole": where
    the whole value is}`."""
    value = masked(value)
    text = orjson.dumps(value, default=str)
    if len(text) <= limit:
        return {"value": value}
    preview = text[:limit].decode("utf-8", "ignore")  # never half a character
    return {
        "preview": preview,
        "bytes": len(text),
        "cut": len(text) - len(preview.encode()),
        "whole": f"{bundle}/stdout.log" if bundle else None,
    }


def node_outputs(
    produced: Iterable[Produced], limit: int = OUTPUT_LIMIT
) -> dict[str, dict[str, dict[str, Any]]]:
    """node → capability → what is shown of its value (see `shown`)."""
    outputs: dict[str, dict[str, dict[str, Any]]] = {}
    for item in sorted(produced, key=lambda p: (p.node, p.capability)):
        value = REDACTED if secret_name(item.capability) else item.value
        outputs.setdefault(item.node, {})[item.capability] = shown(value, item.bundle, limit)
    return outputs
