"""NKeys (ed25519) for the transport plane: identities, and signed events.

A publisher signs each event over the exact bytes it publishes, bound to the subject and
the signing time, so a body altered after signing, an event moved to another subject (or
tenant) and an old event replayed later all fail verification:

    message   = subject + "\\n" + signed_at + "\\n" + body
    headers   = Stratum-Publisher: <public NKey, U...>
                Stratum-Signed-At: <unix time in milliseconds>
                Stratum-Signature: <base64url(ed25519 signature of message)>

Any NATS client can do this with an ed25519 library and its NKey seed (docs/events.md).
"""

from __future__ import annotations

import base64
import binascii

import nacl.exceptions
import nacl.signing
import nkeys

PUBLISHER_HEADER = "Stratum-Publisher"
SIGNED_AT_HEADER = "Stratum-Signed-At"
SIGNATURE_HEADER = "Stratum-Signature"


def new_user_seed() -> str:
    """A fresh NKey user seed (`SU...`): the secret half, shown once, never stored by us."""
    raw = bytes(nacl.signing.SigningKey.generate())
    return str(nkeys.encode_seed(raw, nkeys.PREFIX_BYTE_USER).decode())


def public_key(seed: str) -> str:
    """The public NKey (`U...`) of a user seed: what nats-server and ingest know."""
    return str(nkeys.from_seed(bytearray(seed.encode())).public_key.decode())


def signed_message(subject: str, signed_at: str, body: bytes) -> bytes:
    return f"{subject}\n{signed_at}\n".encode() + body


def sign_event(seed: str, subject: str, body: bytes, now_ms: int) -> dict[str, str]:
    """The headers that make `body` on `subject` a signed event."""
    pair = nkeys.from_seed(bytearray(seed.encode()))
    signed_at = str(now_ms)
    signature = pair.sign(signed_message(subject, signed_at, body))
    return {
        PUBLISHER_HEADER: str(pair.public_key.decode()),
        SIGNED_AT_HEADER: signed_at,
        SIGNATURE_HEADER: base64.urlsafe_b64encode(signature).decode().rstrip("="),
    }


def verify(key: str, message: bytes, signature: str) -> bool:
    """Whether `signature` (base64url) is `key`'s ed25519 signature of `message`."""
    raw = _decode_public_key(key)
    if raw is None:
        return False
    try:
        sig = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
        nacl.signing.VerifyKey(raw).verify(message, sig)
    except (binascii.Error, ValueError, nacl.exceptions.BadSignatureError):
        return False
    return True


def is_user_public_key(key: str) -> bool:
    """Whether `key` is a well-formed public NKey of a user (prefix, length, checksum)."""
    return _decode_public_key(key) is not None


def _decode_public_key(key: str) -> bytes | None:
    """The 32 raw bytes of a user public NKey, or None if it is not one (bad prefix,
    length or checksum)."""
    try:
        data = base64.b32decode(key.encode() + b"=" * (-len(key) % 8))
    except (binascii.Error, ValueError):
        return None
    if len(data) != 35 or data[0] != nkeys.PREFIX_BYTE_USER:
        return None
    body, checksum = data[:-2], data[-2:]
    if nkeys.crc16_checksum(body) != checksum:
        return None
    return bytes(body[1:])
