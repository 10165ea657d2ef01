"""Per-tenant limits: configuration, the events-per-second bucket, the run queue's rule
(pure: the clock is a number)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from functions.ingest.limits import FORGET_AFTER, EventRateLimiter
from functions.planner import core
from stratum.errors import DeferredError, RefusedError
from stratum.events import Envelope, RunAccepted, emit
from stratum.runs.tenant_limits import (
    BUILT_IN_EVENTS_PER_SECOND,
    BUILT_IN_MAX_CONCURRENT_RUNS,
    Limits,
    TenantLimits,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def limits(**entries: dict[str, float]) -> TenantLimits:
    return TenantLimits.model_validate(entries)


# -- configuration --------------------------------------------------------------------------


def test_a_named_tenant_takes_what_it_leaves_out_from_default() -> None:
    configured = limits(
        default={"max_concurrent_runs": 10, "events_per_second": 5}, acme={"max_concurrent_runs": 2}
    )
    assert configured.of("acme") == Limits(max_concurrent_runs=2, events_per_second=5)
    assert configured.of("other") == Limits(max_concurrent_runs=10, events_per_second=5)


def test_nothing_configured_means_the_built_in_limits() -> None:
    assert TenantLimits().of("acme") == Limits(
        BUILT_IN_MAX_CONCURRENT_RUNS, BUILT_IN_EVENTS_PER_SECOND
    )


def test_limits_come_as_json_from_the_environment() -> None:
    parsed = TenantLimits.model_validate('{"acme": {"events_per_second": 0.5}}')
    assert parsed.of("acme").events_per_second == 0.5


@pytest.mark.parametrize(
    "entries",
    [
        {"Not A Tenant": {}},
        {"acme": {"max_concurrent_runs": -1}},
        {"acme": {"events_per_second": -2}},
        {"acme": {"max_runs": 3}},
    ],
)
def test_bad_limits_are_refused(entries: dict[str, dict[str, float]]) -> None:
    with pytest.raises(ValidationError):
        TenantLimits.model_validate(entries)


# -- events per second ----------------------------------------------------------------------


def rate(per_second: float, **kwargs: int) -> EventRateLimiter:
    return EventRateLimiter(limits(acme={"events_per_second": per_second}), **kwargs)


def delay_of(limiter: EventRateLimiter, key: str, now: float) -> float:
    with pytest.raises(DeferredError) as waited:
        limiter.admit("acme", key, now)
    return waited.value.delay


def test_a_burst_of_one_second_passes_then_events_wait_in_arrival_order() -> None:
    limiter = rate(2)
    limiter.admit("acme", "e1", 0.0)
    limiter.admit("acme", "e2", 0.0)
    assert delay_of(limiter, "e3", 0.0) == pytest.approx(0.5)
    assert delay_of(limiter, "e4", 0.0) == pytest.approx(1.0)
    assert limiter.waiting("acme") == 2


def test_a_waiting_event_passes_when_it_comes_back_without_taking_another_token() -> None:
    limiter = rate(1)
    limiter.admit("acme", "e1", 0.0)
    assert delay_of(limiter, "e2", 0.0) == pytest.approx(1.0)
    assert delay_of(limiter, "e2", 0.5) == pytest.approx(0.5)  # back too early: the rest
    limiter.admit("acme", "e2", 1.0)
    assert limiter.waiting("acme") == 0
    # e2's token was taken when it first waited: the next event waits a full interval
    assert delay_of(limiter, "e3", 1.0) == pytest.approx(1.0)


def test_the_bucket_refills_at_the_rate() -> None:
    limiter = rate(10)
    for n in range(10):
        limiter.admit("acme", f"e{n}", 0.0)
    delay_of(limiter, "late", 0.0)
    limiter.admit("acme", "late", 0.1)
    for n in range(10):
        limiter.admit("acme", f"f{n}", 2.1)  # a full bucket again


def test_beyond_the_waiting_room_events_are_refused_with_the_reason() -> None:
    limiter = rate(1, max_waiting=2)
    limiter.admit("acme", "e1", 0.0)
    delay_of(limiter, "e2", 0.0)
    delay_of(limiter, "e3", 0.0)
    with pytest.raises(RefusedError, match="tenant acme is over its limit of 1 events per"):
        limiter.admit("acme", "e4", 0.0)


def test_a_reservation_whose_event_never_came_back_is_forgotten() -> None:
    limiter = rate(1, max_waiting=1)
    limiter.admit("acme", "e1", 0.0)
    delay_of(limiter, "gone", 0.0)
    later = 1.0 + FORGET_AFTER + 1
    limiter.admit("acme", "e2", later)  # the bucket refilled meanwhile
    delay_of(limiter, "e3", later)  # room to wait again: `gone` no longer holds it
    assert limiter.waiting("acme") == 1


def test_tenants_have_their_own_buckets_and_zero_is_no_limit() -> None:
    limiter = EventRateLimiter(limits(acme={"events_per_second": 1}, free={"events_per_second": 0}))
    limiter.admit("acme", "a1", 0.0)
    delay_of(limiter, "a2", 0.0)
    limiter.admit("beta", "b1", 0.0)  # the built-in 100/s
    for n in range(1000):
        limiter.admit("free", f"f{n}", 0.0)


# -- concurrent runs ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("in_progress", "ahead", "limit", "waits"),
    [
        (0, 0, 1, False),
        (1, 0, 1, True),
        (1, 0, 2, False),
        (1, 1, 2, True),  # a slot is free but an earlier run is waiting for it
        (0, 1, 2, False),
        (7, 3, 0, False),  # 0: no limit
        (3, 0, 2, True),  # the limit was lowered: nobody is stopped, nobody new starts
    ],
)
def test_queue_reason(in_progress: int, ahead: int, limit: int, waits: bool) -> None:
    reason = core.queue_reason(in_progress, ahead, limit)
    assert (reason is not None) == waits
    if reason:
        assert f"{in_progress} of its {limit} concurrent runs" in reason


def accepted(run: str = "run-1") -> Envelope:
    payload = RunAccepted(
        topic="t",
        trigger_subject="s",
        event_id="e",
        event_type="t",
        event_source="tests",
        actor="source:tests",
        event_data={},
        inputs_hash="h",
    )
    return emit(payload, cause=run, run_id=run, tenant="acme", source="test", now=NOW)


def test_a_queued_run_says_why_and_is_announced_once() -> None:
    first = core.queued(accepted(), "full", 1, 1, 0, NOW)
    again = core.queued(accepted(), "full", 1, 1, 0, NOW)
    assert first.id == again.id and first.runid == "run-1"
    assert first.data == {"reason": "full", "limit": 1, "in_progress": 1, "ahead": 0}


def test_an_admission_derives_from_its_cause_and_the_run_it_wakes() -> None:
    ended = accepted("run-0")
    woken = core.admitted("run-1", "acme", ended, 1, 0, NOW)
    assert woken.runid == "run-1" and woken.tenant == "acme"
    assert woken.id == core.admitted("run-1", "acme", ended, 1, 0, NOW).id
    assert woken.id != core.admitted("run-2", "acme", ended, 1, 0, NOW).id
