"""Deterministic identifiers.

A run id is derived from (tenant, CloudEvent id), and every event a function emits gets an
id derived from the message it handled. A redelivered message therefore yields identical
ids, which JetStream's `Nats-Msg-Id` de-duplication and the DB's unique keys both drop.
"""

from __future__ import annotations

import hashlib


def _digest(*parts: str, length: int) -> str:
    joined = "\x1f".join(parts).encode()
    return hashlib.sha256(joined).hexdigest()[:length]


def run_id(tenant: str, event_id: str) -> str:
    """The run an incoming event starts: the same event always maps to the same run."""
    return "run-" + _digest("run", tenant, event_id, length=20)


def derived_event_id(cause_id: str, event_type: str, *discriminators: str) -> str:
    """Id of an event emitted while handling `cause_id` (plus what tells siblings apart)."""
    return "evt-" + _digest(cause_id, event_type, *discriminators, length=24)
