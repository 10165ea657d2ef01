"""What an error means for the message it interrupted, decided by the error's type alone.

Both adapters ask `delivery_of` and act on the answer the same way: the JetStream runner
naks (with `retry_delay`) or gives up and terms, the HTTP adapter answers the status the
broker retries on or settles with (`http_adapter.STATUS`). A handler says how to settle a
message only through what it raises; no message text, no log line is ever consulted.
"""

from __future__ import annotations

from enum import StrEnum

from stratum.errors import (
    ConflictError,
    DeferredError,
    InvalidEventError,
    StratumError,
)
from stratum.store import CancellingError, StaleWriteError, StoreError

# the first retry waits this long; each further one twice as long, up to the cap. With the
# default max_deliver (10) a message is tried for about four minutes before it is a dead
# letter: long enough for a restarting database or a rolled-out dependency to come back
BACKOFF_FIRST = 1.0
BACKOFF_CAP = 60.0


class Delivery(StrEnum):
    """How a message whose handling failed is settled."""

    # transient (a dependency down, a timeout): delivered again after `backoff`, up to
    # `max_deliver` deliveries, then a dead letter (its run stays for the watchdog)
    RETRY = "retry"
    # lost a race with a concurrent writer: delivered again at once
    CONFLICT = "conflict"
    # not now (a tenant over its rate): delivered again when the error says
    DEFER = "defer"
    # retrying cannot help: a dead letter at its first failure, and its run ends failed
    PERMANENT = "permanent"
    # not a valid event: a dead letter at its first delivery
    INVALID = "invalid"


# settled for good at the first failure, whatever `max_deliver` allows
GIVE_UP_AT_ONCE = frozenset({Delivery.PERMANENT, Delivery.INVALID})

# the types whose delivery is not their `retryable` flag, most specific first
_BY_TYPE: tuple[tuple[type[BaseException], Delivery], ...] = (
    (InvalidEventError, Delivery.INVALID),
    (DeferredError, Delivery.DEFER),
    (ConflictError, Delivery.CONFLICT),
    # a message handled before: the adapter re-announces what it caused, so a prompt
    # delivery again does exactly that (Handling catches it; this is for anything else)
    (StaleWriteError, Delivery.CONFLICT),
    # a run being cancelled under a write that would move it on: handled again at once,
    # the handler then stops it
    (CancellingError, Delivery.CONFLICT),
    # the store's catch-all: a connection to a SurrealDB server that dropped reads the
    # same as a query it refused, so it is retried (bounded) rather than given up on
    (StoreError, Delivery.RETRY),
)


def delivery_of(error: BaseException) -> Delivery:
    """How to settle a message whose handling raised `error`.

    Stratum's own errors say it with their type (`retryable`, a class attribute; a
    `CredentialsError` is raised with its own). Anything else is a bug or a library's
    failure: retried with backoff up to `max_deliver`, then kept as a dead letter —
    never a hot loop, never lost, and never a run failed on a guess. A group of errors
    is given up on only if each of them would be.
    """
    if isinstance(error, BaseExceptionGroup):  # several at once (a stage's nodes): the
        found = {delivery_of(one) for one in error.exceptions}  # most hopeful one decides
        if len(found) == 1:
            return found.pop()
        return Delivery.PERMANENT if found <= GIVE_UP_AT_ONCE else Delivery.RETRY
    for kind, delivery in _BY_TYPE:
        if isinstance(error, kind):
            return delivery
    if isinstance(error, StratumError):
        return Delivery.RETRY if error.retryable else Delivery.PERMANENT
    return Delivery.RETRY


def backoff(delivery: int) -> float:
    """Seconds before the next delivery after delivery number `delivery` (1 = the first)
    failed retryably: 1, 2, 4, ... doubling, at most `BACKOFF_CAP`."""
    exponent = min(max(delivery, 1) - 1, 16)  # 2**16 s is far past the cap already
    return min(BACKOFF_FIRST * 2.0**exponent, BACKOFF_CAP)


def retry_delay(delivery: Delivery, error: BaseException, count: int) -> float | None:
    """How long a message waits before it is delivered again (None: at once), for one
    that is retried at all (not in `GIVE_UP_AT_ONCE`); `count` is its delivery number."""
    if delivery is Delivery.CONFLICT:
        return None
    if delivery is Delivery.DEFER and isinstance(error, DeferredError):
        return error.delay  # when the tenant may go on: it waited, it did not fail
    return backoff(count)
