"""Errors decide delivery: every error class Stratum has, and errors that are not its own,
classified by type alone; the backoff schedule; what each outcome answers over HTTP."""

from __future__ import annotations

import inspect

import pytest

from stratum import errors
from stratum.executor import OutputError
from stratum.runtime.delivery import (
    BACKOFF_CAP,
    GIVE_UP_AT_ONCE,
    Delivery,
    backoff,
    delivery_of,
    retry_delay,
)
from stratum.runtime.http_adapter import STATUS
from stratum.store import StaleWriteError, StoreError

RETRY, CONFLICT, DEFER = Delivery.RETRY, Delivery.CONFLICT, Delivery.DEFER
PERMANENT, INVALID = Delivery.PERMANENT, Delivery.INVALID

# every class in stratum.errors, and what it means for its message
ERRORS: dict[type[errors.StratumError], Delivery] = {
    errors.StratumError: PERMANENT,
    errors.ConfigError: PERMANENT,
    errors.DependencyUnavailableError: RETRY,
    errors.DefinitionError: PERMANENT,
    errors.PolicyError: PERMANENT,
    errors.PlanError: PERMANENT,
    errors.InvalidEventError: INVALID,
    errors.UnverifiedEventError: PERMANENT,
    errors.CredentialsError: PERMANENT,  # as raised by default; see the instance flag below
    errors.ArtifactError: PERMANENT,
    errors.UnknownRunError: PERMANENT,
    errors.RetryableError: RETRY,
    errors.ConflictError: CONFLICT,
    errors.DeferredError: DEFER,
    errors.RefusedError: PERMANENT,
    errors.NodeExecutionError: PERMANENT,
}


def raised(cls: type[errors.StratumError]) -> errors.StratumError:
    if cls is errors.DeferredError:
        return errors.DeferredError("over its rate", delay=2.5)
    return cls("x")


def test_every_error_class_in_stratum_errors_has_a_decided_delivery() -> None:
    declared = {
        cls
        for _, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, errors.StratumError) and cls.__module__ == errors.__name__
    }
    assert declared == set(ERRORS)


@pytest.mark.parametrize("cls", list(ERRORS), ids=lambda cls: cls.__name__)
def test_each_stratum_error_is_settled_as_its_type_says(cls: type[errors.StratumError]) -> None:
    expected = ERRORS[cls]
    error = raised(cls)
    assert delivery_of(error) is expected
    # the flag and the decision agree: what retries is what says it may help
    assert getattr(error, "retryable", False) == (expected in (RETRY, CONFLICT, DEFER))


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (errors.CredentialsError("store down", retryable=True), RETRY),
        (errors.CredentialsError("no such key", retryable=False), PERMANENT),
        (StaleWriteError("stale"), CONFLICT),
        # the store's catch-all: a dropped connection reads like a refused query
        (StoreError("database error: connection closed"), RETRY),
        (OutputError("node n: stdout is empty"), PERMANENT),
        # not Stratum's: a bug or a library's failure is retried with backoff, bounded
        (ValueError("bug"), RETRY),
        (KeyError("node"), RETRY),
        (RuntimeError("bug"), RETRY),
        (OSError("connection reset"), RETRY),
        (TimeoutError(), RETRY),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else str(value),
)
def test_other_errors(error: Exception, expected: Delivery) -> None:
    assert delivery_of(error) is expected


def test_a_group_of_errors_is_given_up_on_only_if_each_would_be() -> None:
    down = errors.DependencyUnavailableError("cannot start nu")
    gone = errors.DefinitionError("graph version v is not stored")
    assert delivery_of(ExceptionGroup("nodes", [down, down])) is RETRY
    assert delivery_of(ExceptionGroup("nodes", [gone, gone])) is PERMANENT
    assert delivery_of(ExceptionGroup("nodes", [gone, down])) is RETRY
    assert delivery_of(ExceptionGroup("x", [errors.InvalidEventError("x"), gone])) is PERMANENT
    nested = ExceptionGroup("outer", [ExceptionGroup("inner", [gone]), gone])
    assert delivery_of(nested) is PERMANENT


def test_the_message_text_never_decides() -> None:
    assert delivery_of(errors.UnknownRunError("retry me, it can be retried")) is PERMANENT
    assert delivery_of(errors.RetryableError("invalid, permanent")) is RETRY


def test_only_permanent_and_invalid_give_up_at_once() -> None:
    assert set(GIVE_UP_AT_ONCE) == {PERMANENT, INVALID}


def test_backoff_doubles_from_one_second_up_to_its_cap() -> None:
    schedule = [backoff(n) for n in range(1, 11)]
    assert schedule == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0, 60.0]
    assert BACKOFF_CAP == 60.0
    assert backoff(0) == backoff(1) == 1.0  # no delivery count: as after the first
    assert backoff(10_000) == BACKOFF_CAP  # an unlimited max_deliver never overflows


def test_retry_delays() -> None:
    assert retry_delay(CONFLICT, errors.ConflictError("lost"), 3) is None  # at once
    deferred = errors.DeferredError("over its rate", delay=2.5)
    assert retry_delay(DEFER, deferred, 1) == 2.5  # when the tenant may go on, not backoff
    assert retry_delay(RETRY, errors.RetryableError("down"), 3) == backoff(3)
    assert retry_delay(RETRY, ValueError("bug"), 5) == backoff(5)


def test_each_outcome_answers_its_http_status() -> None:
    assert STATUS == {RETRY: 503, CONFLICT: 409, DEFER: 429, PERMANENT: 202, INVALID: 400}
