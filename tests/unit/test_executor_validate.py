"""parse_outputs: the contract between a node's stdout and the capabilities it produces."""

from __future__ import annotations

import time
from typing import Any

import pytest

from stratum.errors import DefinitionError
from stratum.executor import OutputError, parse_outputs, validator_for, validators_for

SCHEMAS: dict[str, dict[str, Any]] = {
    "linted-code": {
        "type": "object",
        "properties": {
            "warnings": {"type": "integer", "minimum": 0},
            "files": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["warnings"],
        "additionalProperties": False,
    },
    "report": {"type": "string"},
}
LINT = validators_for("lint-crate", ("linted-code",), SCHEMAS)
BOTH = validators_for("both", ("linted-code", "report"), SCHEMAS)


@pytest.mark.parametrize(
    ("validators", "stdout", "expected"),
    [
        (LINT, b'{"linted-code": {"warnings": 2}}', {"linted-code": {"warnings": 2}}),
        (
            BOTH,
            b'{"report": "r", "linted-code": {"warnings": 0, "files": ["a"]}}\n',
            {"report": "r", "linted-code": {"warnings": 0, "files": ["a"]}},
        ),
        ({}, b"", {}),
        ({}, b"  \n", {}),
        ({}, b"{}", {}),
    ],
)
def test_valid_outputs(validators: Any, stdout: bytes, expected: Any) -> None:
    assert parse_outputs("n", stdout, validators) == expected


@pytest.mark.parametrize(
    ("validators", "stdout", "message"),
    [
        (
            LINT,
            b'{"linted-code": {"warnings": "x"}}',
            "node lint-crate: output linted-code.warnings: 'x' is not of type 'integer'",
        ),
        (
            LINT,
            b'{"linted-code": {"warnings": 1, "files": ["a", 3]}}',
            "node lint-crate: output linted-code.files[1]: 3 is not of type 'string'",
        ),
        (
            LINT,
            b'{"linted-code": {"warnings": -1}}',
            "node lint-crate: output linted-code.warnings: -1 is less than the minimum of 0",
        ),
        (
            LINT,
            b'{"linted-code": {}}',
            "node lint-crate: output linted-code: 'warnings' is a required property",
        ),
        (
            LINT,
            b"not json at all",
            "node lint-crate: stdout is not JSON (first 80 chars: 'not json at all')",
        ),
        (LINT, b"", "node lint-crate: stdout is empty, expected an object with linted-code"),
        (LINT, b'"text"', "node lint-crate: stdout is a JSON str, expected an object"),
        (
            LINT,
            b"{}",
            "node lint-crate: output keys do not match produces (missing linted-code)",
        ),
        (
            {},
            b'{"surprise": 1}',
            "node lint-crate: output keys do not match produces (unexpected surprise)",
        ),
        (
            BOTH,
            b'{"linted-code": {"warnings": 0}, "x": 1}',
            "node lint-crate: output keys do not match produces (missing report; unexpected x)",
        ),
    ],
)
def test_invalid_outputs(validators: Any, stdout: bytes, message: str) -> None:
    with pytest.raises(OutputError) as caught:
        parse_outputs("lint-crate", stdout, validators)
    assert str(caught.value) == message
    assert caught.value.retryable is False


def test_preview_is_cut_at_80_chars_and_redacted() -> None:
    stdout = b"secret-token " + b"y" * 200
    with pytest.raises(OutputError) as caught:
        parse_outputs("n", stdout, LINT, redact=lambda s: s.replace("secret-token", "***"))
    text = str(caught.value)
    assert "secret-token" not in text
    assert f"'{'***' + ' ' + 'y' * 76}'" in text


def test_long_messages_stay_one_short_line() -> None:
    stdout = b'{"linted-code": {"warnings": "' + b"z\\n" * 500 + b'"}}'
    with pytest.raises(OutputError) as caught:
        parse_outputs("n", stdout, LINT)
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 300


def test_missing_or_invalid_schema_is_a_definition_error() -> None:
    with pytest.raises(DefinitionError, match="node n: no schema for capability gone"):
        validators_for("n", ("gone",), SCHEMAS)
    with pytest.raises(DefinitionError, match="capability bad: invalid JSON Schema"):
        validator_for("bad", {"type": "no-such-type"})


def test_validators_are_cached_by_content() -> None:
    first = validator_for("a", {"type": "object", "required": ["x"]})
    assert validator_for("b", {"required": ["x"], "type": "object"}) is first
    assert validator_for("c", {"type": "object"}) is not first


def test_validation_is_well_under_a_millisecond() -> None:
    stdout = b'{"linted-code": {"warnings": 3, "files": ["a.rs", "b.rs", "c.rs"]}}'
    rounds = 200
    started = time.perf_counter()
    for _ in range(rounds):
        validators = validators_for("n", ("linted-code",), SCHEMAS)
        parse_outputs("n", stdout, validators)
    per_call = (time.perf_counter() - started) / rounds
    assert per_call < 0.001, f"{per_call * 1e6:.0f} µs per call"
