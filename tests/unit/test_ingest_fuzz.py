"""Ingest's parser against arbitrary input (hypothesis; pure: no servers).

Whatever a publisher sends, `parse_incoming` either returns an event or raises
`InvalidEventError` (which ingest records and terminates); anything else would be a crash
the runner retries forever. Bodies are raw bytes or JSON objects shaped like CloudEvents
(with random values), headers mix CloudEvents binary-mode names with random ones. What it
accepts must also be acceptable to `accept` (hashable, serialisable data). Derandomized:
CI runs the same examples every time.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from functions.ingest.core import accept, parse_incoming
from stratum.bus.subjects import Subjects
from stratum.errors import InvalidEventError

SUBJECTS = Subjects("stratum")
SUBJECT = "stratum.events.acme.crate.push"
BINARY = {"ce-specversion": "1.0", "ce-id": "1", "ce-source": "s", "ce-type": "t"}
BINARY_JSON = {**BINARY, "content-type": "application/json"}
FUZZ = settings(derandomize=True, max_examples=300, deadline=None)
NOW = datetime(2026, 1, 1, tzinfo=UTC)

REQUIRED = ("specversion", "id", "source", "type")
ATTRIBUTES = [
    "specversion",
    "id",
    "source",
    "type",
    "data",
    "data_base64",
    "datacontenttype",
    "datacontentencoding",
    "dataschema",
    "subject",
    "time",
    "tenant",
]
GOOD_VALUES: dict[str, Any] = {
    "specversion": "1.0",
    "id": "e-1",
    "source": "ci",
    "type": "crate.push",
    "data": {"a": 1},
    "data_base64": "eyJhIjogMX0=",
    "datacontenttype": "application/json",
    "time": "2026-01-01T00:00:00Z",
    "tenant": "acme",
}

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**63, max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=8,
)


@st.composite
def attribute_value(draw: st.DrawFn, name: str) -> Any:
    """Mostly plausible values, so the parser gets past its first checks."""
    if name in GOOD_VALUES and draw(st.booleans()):
        return GOOD_VALUES[name]
    return draw(json_values | st.sampled_from(["", "0.3", "1.0", "not-a-time", "!!base64"]))


def present(draw: st.DrawFn, name: str) -> bool:
    """Required attributes are there 9 times in 10, others 3 in 10."""
    return draw(st.integers(0, 9)) < (9 if name in REQUIRED else 3)


@st.composite
def structured_bodies(draw: st.DrawFn) -> bytes:
    document = draw(st.dictionaries(st.text(max_size=8), json_values, max_size=2))
    for name in ATTRIBUTES:
        if present(draw, name):
            document[name] = draw(attribute_value(name))
    return json.dumps(document).encode()


header_names = st.sampled_from(
    [f"ce-{name}" for name in ATTRIBUTES]
    + ["CE-SpecVersion", "Ce-Id", "content-type", "Content-Type", "ce-"]
) | st.text(max_size=10)
header_values = st.sampled_from(
    ["1.0", "0.3", "e-1", "ci", "crate.push", "application/json", "text/plain", "acme", ""]
) | st.text(max_size=20)
content_types = st.sampled_from(
    ["application/json", "text/plain", "application/cloudevents+json", "text/x+json; a=b"]
)


@st.composite
def binary_headers(draw: st.DrawFn) -> dict[str, str]:
    """Binary mode: attributes as `ce-*` headers (mostly plausible), maybe a content type."""
    out = draw(st.dictionaries(header_names, header_values, max_size=2))
    for name in ATTRIBUTES[:4] + ATTRIBUTES[6:]:  # not data / data_base64
        if present(draw, name):
            good = GOOD_VALUES.get(name)
            if isinstance(good, str) and draw(st.booleans()):
                out[f"ce-{name}"] = good
            else:
                out[f"ce-{name}"] = draw(header_values)
    if draw(st.booleans()):
        out["content-type"] = draw(content_types | header_values)
    return out


headers = binary_headers() | st.dictionaries(header_names, header_values, max_size=8)
bodies = (
    st.binary(max_size=300)
    | structured_bodies()
    | json_values.map(lambda value: json.dumps(value).encode())
)
subjects = st.sampled_from([SUBJECT, SUBJECT, SUBJECT, "stratum.events.acme", "other"]) | st.text(
    max_size=30
)


def check(subject: str, header_map: dict[str, str], body: bytes) -> None:
    try:
        event = parse_incoming(subject, header_map, body, SUBJECTS)
    except InvalidEventError as error:
        assert str(error), "the reason is recorded: it must say something"
        return
    record, _ = accept(event, actor=f"source:{event.source}", now=NOW)
    assert record["tenant"] == "acme" and isinstance(event.data, dict)


# Each of these crashed before (the SDK decodes JSON with the standard library, which
# takes what orjson cannot write back, and recurses).
STRUCTURED_BIG_INT = b'{"specversion": "1.0", "id": "1", "source": "s", "type": "t", "data": '


@FUZZ
@given(st.binary(max_size=500), headers)
@example(STRUCTURED_BIG_INT + b'{"a": 123456789012345678901234567890}}', {})
@example(b'{"a": 123456789012345678901234567890}', BINARY_JSON)
@example(b'{"a": NaN, "b": Infinity}', BINARY_JSON)
@example(b'{"a": "\\ud800"}', BINARY_JSON)
@example(b'{"a": ' * 300 + b"1" + b"}" * 300, BINARY_JSON)
@example(b"[" * 100_000, BINARY_JSON)
@example(b'{"specversion": "1.0", "id": "1", "source": "s", "type": "t", "data": 1e999}', {})
@example(b"\xff\xfe{}", BINARY)
def test_arbitrary_bytes_only_raise_invalid_event(body: bytes, header_map: dict[str, str]) -> None:
    check(SUBJECT, header_map, body)


@FUZZ
@given(structured_bodies())
@example(
    b'{"specversion": "0.3", "id": "1", "source": "s", "type": "t", "datacontentencoding": null}'
)
def test_cloudevent_shaped_json_only_raises_invalid_event(body: bytes) -> None:
    check(SUBJECT, {}, body)


@FUZZ
@given(subjects, headers, bodies)
def test_any_message_only_raises_invalid_event(
    subject: str, header_map: dict[str, str], body: bytes
) -> None:
    check(subject, header_map, body)
