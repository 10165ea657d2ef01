"""Every error Stratum raises on purpose, so callers can tell them apart.

The name says what went wrong; `retryable` says whether trying again may help. Messages are
one line, name the place (file, field, node, event) and never carry secret values.
"""

from __future__ import annotations


class StratumError(Exception):
    """Base of every deliberate Stratum error."""

    retryable: bool = False


class ConfigError(StratumError):
    """The startup configuration is missing, malformed or names something unreachable."""


class DependencyUnavailableError(StratumError):
    """A required component (NATS, SurrealDB, nu, ...) is missing or unreachable."""


class DefinitionError(StratumError):
    """The Nickel workflow definitions do not evaluate, break a contract, or are inconsistent."""


class PlanError(StratumError):
    """No valid plan exists for a topic: nothing matches, a producer is missing or
    duplicated, or the capability graph has a cycle."""


class InvalidEventError(StratumError):
    """An incoming message is not a valid Stratum/CloudEvents event. Never retried."""


class UnknownRunError(StratumError):
    """A run id that no record matches."""


class RetryableError(StratumError):
    """A transient failure (conflict, timeout talking to a dependency): try again later."""

    retryable = True


class NodeExecutionError(StratumError):
    """A node's script failed: non-zero exit, timeout, garbage output, schema violation."""
