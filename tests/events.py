"""A run's events for tests: payloads in, envelopes out, as the functions would emit
them (ids derived from a cause, times from T0), so the tests that fold or project runs
build them one way."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from stratum.clock import iso, utc_now
from stratum.events import Envelope, ExecuteStage, Payload, RunAccepted, emit

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def accepted(topic: str = "t.x", event_id: str = "e") -> RunAccepted:
    return RunAccepted(
        topic=topic,
        trigger_subject="s",
        event_id=event_id,
        event_type=topic,
        event_source="src",
        actor="a",
        event_data={},
        inputs_hash="h",
    )


def run_events(
    payloads: Sequence[Payload],
    *,
    run_id: str = "run-1",
    tenant: str = "acme",
    at_ms: Sequence[float] | None = None,
) -> list[Envelope]:
    """The envelopes of `payloads`, the i-th at T0 + `at_ms[i]` ms (default: i ms)."""
    times = at_ms if at_ms is not None else range(len(payloads))
    return [
        emit(
            payload,
            cause=f"cause-{i}",
            run_id=run_id,
            tenant=tenant,
            source="test",
            now=T0 + timedelta(milliseconds=at),
            discriminator=str(i),
        )
        for i, (payload, at) in enumerate(zip(payloads, times, strict=True))
    ]


def publisher_event(
    topic: str, data: dict[str, Any], *, ident: str = "", source: str = "tests", **extra: Any
) -> dict[str, Any]:
    """A publisher's CloudEvent in structured mode (a fresh id unless given); `extra`
    attributes (e.g. the `tenant` extension) are added."""
    return {
        "specversion": "1.0",
        "id": ident or str(uuid.uuid4()),
        "source": source,
        "type": topic,
        "time": iso(utc_now()),
        "datacontenttype": "application/json",
        "data": data,
        **extra,
    }


def binary_event_headers(
    topic: str, ident: str, *, source: str = "tests", **extra: str
) -> dict[str, str]:
    """A publisher's CloudEvent in binary mode: its attributes as `ce-*` headers (`extra`
    ones too, e.g. the `tenant` extension); the data goes in the body as JSON."""
    return {
        "ce-specversion": "1.0",
        "ce-id": ident,
        "ce-source": source,
        "ce-type": topic,
        **{f"ce-{name}": value for name, value in extra.items()},
        "content-type": "application/json",
    }


def stage_command(run_id: str, nodes: Sequence[str], *, tenant: str = "acme") -> Envelope:
    """The command to run stage 0 of `run_id` (from a fresh cause, so a fresh id), as
    the planner sends it."""
    return emit(
        ExecuteStage(stage=0, nodes=list(nodes)),
        cause=f"plan-{uuid.uuid4().hex}",
        run_id=run_id,
        tenant=tenant,
        source="tests",
        now=utc_now(),
    )
