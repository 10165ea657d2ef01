"""Is this message signed by a registered publisher of its tenant? (pure)

Ingest asks it of every event, the HTTP API of every request. The caller looks the
publisher up by the key the message names and passes the record (or None). Every way to
fail says what was wrong, in one line, without the signature.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from stratum.errors import UnverifiedEventError
from stratum.store import PublisherRecord
from stratum.trust.principal import Principal
from stratum.trust.signing import (
    PUBLISHER_HEADER,
    SIGNATURE_HEADER,
    SIGNED_AT_HEADER,
    signed_message,
    verify,
)


@dataclass(frozen=True)
class SignatureRules:
    """Whether unsigned events are refused, and how old a signature may be."""

    required: bool = True
    window_seconds: float = 300.0


def claimed_key(headers: Mapping[str, str]) -> str | None:
    """The public key the event says signed it (to look the publisher up by)."""
    return headers.get(PUBLISHER_HEADER) or None


def verify_publisher(
    headers: Mapping[str, str],
    subject: str,
    body: bytes,
    tenant: str,
    publisher: PublisherRecord | None,
    *,
    now_ms: int,
    window_seconds: float,
    what: str = "event",
) -> Principal:
    """The verified principal; UnverifiedEventError saying why not."""
    key, signature = headers.get(PUBLISHER_HEADER), headers.get(SIGNATURE_HEADER)
    signed_at = headers.get(SIGNED_AT_HEADER)
    if not key or not signature or not signed_at:
        missing = [
            name
            for name, value in (
                (PUBLISHER_HEADER, key),
                (SIGNED_AT_HEADER, signed_at),
                (SIGNATURE_HEADER, signature),
            )
            if not value
        ]
        raise UnverifiedEventError(f"unsigned {what}: no {', '.join(missing)} header")
    if publisher is None:
        raise UnverifiedEventError(f"unknown publisher key {key[:12]}…")
    if not publisher.active:
        raise UnverifiedEventError(
            f"publisher {publisher.name} was revoked at {publisher.revoked_at}"
        )
    if publisher.tenant != tenant:
        raise UnverifiedEventError(
            f"publisher {publisher.name} belongs to tenant {publisher.tenant}, not {tenant}"
        )
    try:
        signed_ms = int(signed_at)
    except ValueError:
        raise UnverifiedEventError(
            f"{SIGNED_AT_HEADER} must be unix milliseconds, got {signed_at[:20]!r}"
        ) from None
    age = (now_ms - signed_ms) / 1000
    if abs(age) > window_seconds:
        when = f"{age:.0f} s ago" if age > 0 else f"{-age:.0f} s in the future"
        raise UnverifiedEventError(
            f"signed {when}, outside the {window_seconds:g} s window (a replay, or a clock off)"
        )
    if not verify(key, signed_message(subject, signed_at, body), signature):
        raise UnverifiedEventError(
            f"signature of publisher {publisher.name} does not match this body and subject"
            " (altered or forged)"
        )
    return Principal(kind="publisher", name=publisher.name, tenant=publisher.tenant, public_key=key)
