"""Signed events: every way a signature can fail is caught, with a reason."""

from __future__ import annotations

import pytest

from stratum.errors import UnverifiedEventError
from stratum.store import PublisherRecord
from stratum.trust.publisher_auth import verify_publisher
from stratum.trust.signing import SIGNATURE_HEADER, new_user_seed, public_key, sign_event

SUBJECT = "stratum.events.acme.crate.push"
BODY = b'{"specversion": "1.0", "id": "e-1"}'
NOW = 1_800_000_000_000
SEED = new_user_seed()
CI = PublisherRecord(name="ci", tenant="acme", public_key=public_key(SEED), created_at="t")


def check(
    headers: dict[str, str],
    *,
    subject: str = SUBJECT,
    body: bytes = BODY,
    tenant: str = "acme",
    publisher: PublisherRecord | None = CI,
    now_ms: int = NOW,
) -> str:
    principal = verify_publisher(
        headers, subject, body, tenant, publisher, now_ms=now_ms, window_seconds=300
    )
    return principal.actor


def test_a_signed_event_names_its_publisher() -> None:
    assert check(sign_event(SEED, SUBJECT, BODY, NOW - 1000)) == "publisher:ci"


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("unsigned", "unsigned event"),
        ("unknown key", "unknown publisher key"),
        ("revoked", "was revoked"),
        ("other tenant", "belongs to tenant acme, not globex"),
        ("altered body", "does not match"),
        ("moved subject", "does not match"),
        ("forged", "does not match"),
        ("replayed", "outside the 300 s window"),
        ("from the future", "in the future"),
        ("bad time", "unix milliseconds"),
    ],
)
def test_every_unverifiable_event_is_refused_with_its_reason(case: str, reason: str) -> None:
    signed = sign_event(SEED, SUBJECT, BODY, NOW)
    kwargs: dict[str, object] = {}
    headers = dict(signed)
    if case == "unsigned":
        headers = {}
    elif case == "unknown key":
        kwargs["publisher"] = None
    elif case == "revoked":
        kwargs["publisher"] = CI.model_copy(update={"revoked_at": "2026-01-01"})
    elif case == "other tenant":
        kwargs["tenant"] = "globex"
        kwargs["subject"] = SUBJECT.replace("acme", "globex")
    elif case == "altered body":
        kwargs["body"] = BODY.replace(b"e-1", b"e-2")
    elif case == "moved subject":
        kwargs["subject"] = SUBJECT.replace("crate.push", "release.request")
    elif case == "forged":  # someone else's key, claiming to be ci
        headers[SIGNATURE_HEADER] = sign_event(new_user_seed(), SUBJECT, BODY, NOW)[
            SIGNATURE_HEADER
        ]
    elif case == "replayed":
        kwargs["now_ms"] = NOW + 301_000
    elif case == "from the future":
        kwargs["now_ms"] = NOW - 301_000
    elif case == "bad time":
        headers["Stratum-Signed-At"] = "yesterday"
    with pytest.raises(UnverifiedEventError, match=reason):
        check(headers, **kwargs)  # type: ignore[arg-type]
