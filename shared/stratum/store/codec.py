"""SurrealDB's CBOR through cbor2's C extension, byte for byte the SDK's own.

The SDK encodes every request and decodes every response with a pure-Python copy of cbor2:
about 0.15 ms each way for a transaction's 2 KB, on the event loop, a dozen times per
pipeline. cbor2's C extension writes the same bytes once SurrealDB's one departure from
plain CBOR is applied — None is NONE, tag 6 around null — and reads them back through the
SDK's own tag decoder. `install()` routes the SDK's codec through it; a value it has no
rule for (a geometry, a RecordID sent back) falls back to the SDK's encoder whole.
tests/unit/test_codec.py holds it to the SDK's bytes and values.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC
from typing import Any

import cbor2

TAG_NONE = 6
# SurrealDB's NONE: written by cbor2 itself, no callback per value
NONE = cbor2.CBORTag(TAG_NONE, None)


class _Unsupported(Exception):
    """A value only the SDK's encoder knows how to write."""


_SCALARS = frozenset({str, int, float, bool, bytes})


def _prepared(value: Any) -> Any:
    """`value` with every None replaced by the NONE tag (scalars are checked in place, so
    the walk calls itself only for containers)."""
    if value is None:
        return NONE
    kind = type(value)
    if kind in _SCALARS:
        return value
    if isinstance(value, dict):
        return {
            key: item if type(item) in _SCALARS else NONE if item is None else _prepared(item)
            for key, item in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [
            item if type(item) in _SCALARS else NONE if item is None else _prepared(item)
            for item in value
        ]
    return value


def _default(encoder: cbor2.CBOREncoder, value: Any) -> None:
    raise _Unsupported(type(value).__name__)


def encode(value: Any) -> bytes:
    """`value` as the SDK would encode it."""
    try:
        return cbor2.dumps(_prepared(value), default=_default, timezone=UTC)
    except _Unsupported:
        from surrealdb.data.cbor import encode as sdk_encode

        return sdk_encode(value)


def _thawed(value: Any) -> Any:
    """A tag's content as the SDK's decoder gives it: lists and dicts, not the frozen
    forms cbor2 builds inside tags."""
    if isinstance(value, (list, tuple)):
        return [_thawed(item) for item in value]
    if isinstance(value, Mapping):  # cbor2's frozendict too
        return {key: _thawed(item) for key, item in value.items()}
    return value


def _tag(tag: cbor2.CBORTag, immutable: bool) -> Any:
    from surrealdb.data.cbor import tag_decoder

    if tag.tag == TAG_NONE:
        return None
    return tag_decoder(None, cbor2.CBORTag(tag.tag, _thawed(tag.value)))  # type: ignore[arg-type]


def decode(data: bytes) -> Any:
    """`data` as the SDK would decode it."""
    return cbor2.loads(data, tag_hook=_tag)


def install() -> bool:
    """Route the SDK's request encoding and response decoding (embedded engine and
    WebSocket) through this module; False, leaving the SDK as it is, if its modules no
    longer name the codec where this expects it. Idempotent."""
    from surrealdb.connections import async_embedded, async_ws
    from surrealdb.request_message.descriptors import cbor_ws

    places: list[tuple[Any, str, Callable[..., Any]]] = [
        (cbor_ws, "encode", encode),
        (async_embedded, "decode", decode),
        (async_ws, "decode", decode),
    ]
    if not all(callable(getattr(module, name, None)) for module, name, _ in places):
        return False
    for module, name, ours in places:
        setattr(module, name, ours)
    return True
