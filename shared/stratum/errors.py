"""Every error Stratum raises on purpose, so callers can tell them apart.

The name says what went wrong; `retryable` says whether trying again may help, and that is
what decides a message's delivery (`stratum.runtime.delivery`): retried with backoff, or
given up on at once. Messages are one line, name the place (file, field, node, event) and
never carry secret values.
"""

from __future__ import annotations


class StratumError(Exception):
    """Base of every deliberate Stratum error."""

    retryable: bool = False


class ConfigError(StratumError):
    """The startup configuration is missing, malformed or names something unreachable."""


class DependencyUnavailableError(StratumError):
    """A required component (NATS, SurrealDB, nu, ...) is missing or unreachable. At
    start-up it stops the start; while handling a message it is retried (it may be back)."""

    retryable = True


class DefinitionError(StratumError):
    """The Nickel workflow definitions do not evaluate, break a contract, or are inconsistent."""


class PolicyError(StratumError):
    """The Cedar policies, their schema or their entities do not parse or do not validate."""


class PlanError(StratumError):
    """No valid plan exists for a topic: nothing matches, a producer is missing or
    duplicated, or the capability graph has a cycle."""


class InvalidEventError(StratumError):
    """An incoming message is not a valid Stratum/CloudEvents event. Never retried."""


class UnverifiedEventError(StratumError):
    """A valid event whose publisher could not be verified (unsigned, unknown or revoked
    key, wrong tenant, bad signature, outside the time window). It becomes a Denied run,
    never a running one."""


class CredentialsError(StratumError):
    """A node's secrets could not be obtained for an attempt: the secret store is down or
    refuses, or a declared path or key does not exist. `retryable` says whether a later
    attempt may get them. Messages name paths and variables, never values."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


class ArtifactError(StratumError):
    """An OCI artifact of definitions could not be published, fetched or verified: the
    registry is unreachable or refuses, a layer's digest does not match its annotation, an
    annotated layer is missing, or a path in it is unsafe. Nothing of it reaches Nickel."""


class UnknownRunError(StratumError):
    """A run id that no record matches."""


class RetryableError(StratumError):
    """A transient failure (conflict, timeout talking to a dependency): try again later."""

    retryable = True


class ConflictError(RetryableError):
    """A write lost a race with a concurrent one (a transaction conflict): trying again at
    once will most likely succeed."""


class DeferredError(RetryableError):
    """Not now: a tenant is over a limit. The runner hands the message back to be
    delivered again in `delay` seconds (it has waited, not failed)."""

    def __init__(self, message: str, *, delay: float) -> None:
        super().__init__(message)
        self.delay = delay


class RefusedError(StratumError):
    """A valid message turned away for good: a tenant over a limit with no room left to
    wait. Kept as a dead letter (re-drivable), never retried."""


class NodeExecutionError(StratumError):
    """A node's script failed: non-zero exit, timeout, garbage output, schema violation."""
