"""Events per second per tenant: a token bucket with reservations.

A tenant's bucket holds up to one second of events (at least one) and refills at its
`events_per_second`. An event that finds it empty takes a token anyway, which reserves the
moment the bucket will have refilled it: the event is handed back to JetStream to be
delivered again at that moment (`DeferredError`), and passes then without taking another,
so a waiting event costs one redelivery and waiting events go through in arrival order.
A tenant with `MAX_WAITING` events already waiting has its next ones refused
(`RefusedError`: kept as a dead letter with the reason, re-drivable): waiting events hold
the ingest consumer's pending-ack budget, shared by every tenant, so one tenant's flood
must not stall the others.

Per ingest instance (each has its buckets): N instances let a tenant through at up to N
times its rate. The clock is a parameter, so this is pure.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from stratum.errors import DeferredError, RefusedError
from stratum.runs.tenant_limits import TenantLimits

# events of one tenant that may wait at once, per instance
MAX_WAITING = 32
# a reservation whose event never came back (delivered to another instance) is forgotten
FORGET_AFTER = 30.0
# JetStream's redelivery timer is not exact to the millisecond
EARLY = 0.005


@dataclass
class _Bucket:
    tokens: float
    at: float
    # reservation key (the run id the event starts) -> when it may pass
    waiting: dict[str, float] = field(default_factory=dict)


class EventRateLimiter:
    """Admits a tenant's events at its configured rate, in arrival order."""

    def __init__(self, limits: TenantLimits, *, max_waiting: int = MAX_WAITING) -> None:
        self._limits = limits
        self._max_waiting = max_waiting
        self._buckets: dict[str, _Bucket] = {}

    def admit(self, tenant: str, key: str, now: float) -> None:
        """Let the event through, or raise DeferredError (come back in `delay` seconds: a
        slot is reserved under `key`) or RefusedError (too many waiting already)."""
        rate = self._limits.of(tenant).events_per_second
        if rate <= 0:
            return
        capacity = max(rate, 1.0)
        bucket = self._buckets.setdefault(tenant, _Bucket(tokens=capacity, at=now))
        reserved = bucket.waiting.get(key)
        if reserved is not None:
            if now >= reserved - EARLY:
                del bucket.waiting[key]
                return
            raise _wait(tenant, rate, reserved - now)
        bucket.tokens = min(capacity, bucket.tokens + (now - bucket.at) * rate)
        bucket.at = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return
        for stale in [k for k, at in bucket.waiting.items() if at + FORGET_AFTER < now]:
            del bucket.waiting[stale]
        if len(bucket.waiting) >= self._max_waiting:
            raise RefusedError(
                f"tenant {tenant} is over its limit of {rate:g} events per second and "
                f"{len(bucket.waiting)} of its events already wait; refused (re-drive it later)"
            )
        bucket.tokens -= 1
        delay = -bucket.tokens / rate
        bucket.waiting[key] = now + delay
        raise _wait(tenant, rate, delay)

    def waiting(self, tenant: str) -> int:
        """How many of `tenant`'s events hold a reservation."""
        bucket = self._buckets.get(tenant)
        return len(bucket.waiting) if bucket else 0


def _wait(tenant: str, rate: float, delay: float) -> DeferredError:
    return DeferredError(
        f"tenant {tenant} is over its limit of {rate:g} events per second; "
        f"the event waits {delay:.2f} s",
        delay=delay,
    )
