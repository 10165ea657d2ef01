"""Stratum's CBOR (`stratum.store.codec`) writes the bytes the SDK's pure-Python encoder
writes and reads back the values the SDK's decoder reads, so routing the SDK through it
changes nothing the database sees or answers."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import cbor2
import pytest
from surrealdb.data.cbor import decode as sdk_decode
from surrealdb.data.cbor import encode as sdk_encode
from surrealdb.data.types.duration import Duration
from surrealdb.data.types.record_id import RecordID
from surrealdb.data.types.table import Table

from stratum.store import codec

ENVELOPE = '{"specversion":"1.0","id":"e1","type":"stratum.node.succeeded","data":{"n":1}}'
REQUESTS: list[Any] = [
    None,
    {"id": "1", "method": "query", "params": ["RETURN $x;", {"x": None}]},
    {
        "id": "2",
        "method": "query",
        "params": [
            "LET $a = 1;\nFOR $e IN $events { CREATE type::thing('event', $e.id) CONTENT $e };",
            {
                "run": "run-1",
                "stage": 0,
                "expected": None,
                "events": [
                    {"id": "e1", "node": None, "envelope": ENVELOPE, "trace": {}},
                    {"id": "e2", "node": "a", "envelope": ENVELOPE * 3, "trace": None},
                ],
                "record": {"attempts": [{"exit_code": 0, "signal": None, "ms": 31.25}]},
                "nodes": ("a", "b"),
                "flags": [True, False],
            },
        ],
    },
    {"unicode": "naïve — ünïcødé ✓", "empty": "", "list": [], "map": {}},
    {"ints": [0, 1, -1, 23, 24, 255, 256, 65535, 2**32, 2**63 - 1, -(2**63)], "big": 2**70},
    {"floats": [0.0, 0.1, -2.5, 1e300, 123456.789]},
    {"bytes": b"\x00\xffbinary", "when": datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)},
    # values with no rule of their own: written by the SDK's encoder whole
    {"record": RecordID("node_exec", ["run-1", "a"]), "table": Table("run"), "x": None},
]


@pytest.mark.parametrize("value", REQUESTS)
def test_encoding_is_the_sdks_byte_for_byte(value: Any) -> None:
    assert codec.encode(value) == sdk_encode(value)


RESPONSES: list[Any] = [
    {"id": "1", "result": [{"status": "OK", "result": [{"id": RecordID("run", "r1")}]}]},
    {"result": [{"id": RecordID("node_exec", ["run-1", "a"]), "status": None, "n": 3}]},
    {"result": [Table("capability"), RecordID("x", {"k": [1, 2]}), uuid.UUID(int=7)]},
    {"result": {"took": Duration.parse(3, 500), "tags": ["a", "b"], "nested": [[1, [2]]]}},
]


def roundtrip_forms(value: Any) -> list[bytes]:
    """The SDK's bytes of `value`, and a response the engine writes with its compact tags
    (datetime as [seconds, nanoseconds], NONE as tag 6)."""
    compact = cbor2.dumps(
        {
            "at": cbor2.CBORTag(12, [1767225600, 500_000_000]),
            "none": cbor2.CBORTag(6, None),
            "in": cbor2.CBORTag(14, [90]),
        }
    )
    return [sdk_encode(value), compact]


@pytest.mark.parametrize("value", RESPONSES)
def test_decoding_gives_the_sdks_values(value: Any) -> None:
    for data in roundtrip_forms(value):
        ours, theirs = codec.decode(data), sdk_decode(data)
        assert ours == theirs
        assert repr(ours) == repr(theirs)  # the same types, lists not tuples, inside tags too


def test_install_routes_the_sdk_through_it() -> None:
    from surrealdb.connections import async_embedded, async_ws
    from surrealdb.request_message.descriptors import cbor_ws

    assert codec.install()
    assert cbor_ws.encode is codec.encode
    assert async_embedded.decode is codec.decode and async_ws.decode is codec.decode
