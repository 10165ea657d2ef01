"""Vault's answers, as Stratum errors that say whether trying again may help.

Messages are built from the exception's type and Vault's own error list, never from a
request: nothing a node reads (or the seed writes) can end up in one.
"""

from __future__ import annotations

import hvac.exceptions

from stratum.errors import CredentialsError

# the store is down, sealed, overloaded or slow: a later attempt may succeed (requests'
# connection errors and timeouts are OSErrors)
_TRANSIENT = (
    hvac.exceptions.VaultDown,
    hvac.exceptions.InternalServerError,
    hvac.exceptions.BadGateway,
    hvac.exceptions.RateLimitExceeded,
    OSError,
)


def reason(exc: Exception) -> str:
    """A one-line, value-free account of what Vault (or the connection) said."""
    if isinstance(exc, hvac.exceptions.InvalidPath):
        return "not found"
    if isinstance(exc, hvac.exceptions.Forbidden):
        return "permission denied"
    if isinstance(exc, OSError):
        return f"the secret store is not reachable ({type(exc).__name__})"
    if isinstance(exc, hvac.exceptions.VaultError) and exc.errors:
        return " ".join("; ".join(str(error) for error in exc.errors).split())[:200]
    return type(exc).__name__


def credentials_error(what: str, exc: Exception) -> CredentialsError:
    """`what` failed because of `exc`; retryable when the store itself is the trouble."""
    return CredentialsError(f"{what}: {reason(exc)}", retryable=isinstance(exc, _TRANSIENT))
