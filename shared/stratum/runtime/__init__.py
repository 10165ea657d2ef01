"""Runs function declarations: the one runner (`handling`), its JetStream and HTTP
adapters, and the bus plumbing."""

from stratum.runtime.function import (
    Declaration,
    Dependencies,
    Function,
    Handler,
    Inbound,
    run_key,
)
from stratum.runtime.jetstream import JetStreamRunner, ensure_streams
from stratum.runtime.publisher import Publisher

__all__ = [
    "Declaration",
    "Dependencies",
    "Function",
    "Handler",
    "Inbound",
    "JetStreamRunner",
    "Publisher",
    "ensure_streams",
    "run_key",
]
