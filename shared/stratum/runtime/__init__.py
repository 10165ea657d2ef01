"""Runs function declarations: the JetStream consumer adapter and the bus plumbing."""

from stratum.runtime.function import Function, FunctionContext, Inbound, run_key
from stratum.runtime.jetstream import JetStreamRunner, ensure_streams
from stratum.runtime.publisher import Publisher

__all__ = [
    "Function",
    "FunctionContext",
    "Inbound",
    "JetStreamRunner",
    "Publisher",
    "ensure_streams",
    "run_key",
]
