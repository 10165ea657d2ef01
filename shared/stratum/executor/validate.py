"""Checking a node's stdout against the capabilities it promised to produce.

A script that prints the wrong thing has a bug that retrying will not fix, so every failure
here is an `OutputError` (terminal). This runs once per attempt on the hot path: validators
are built once per distinct schema and cached.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection, Mapping
from typing import Any

import orjson
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, ValidationError, best_match

from stratum.errors import DefinitionError, NodeExecutionError

from ._text import one_line

_PREVIEW = 80


class OutputError(NodeExecutionError):
    """A script's stdout is not the JSON object its node declares. Never retried."""

    retryable = False


def validator_for(capability: str, schema: Mapping[str, Any]) -> Draft202012Validator:
    """A Draft 2020-12 validator for `schema`, built once per distinct schema content."""
    # Keyed by content, not identity: a graph reload may hand us equal but new dicts, and
    # an id() could be reused by a different schema.
    key = orjson.dumps(schema, option=orjson.OPT_SORT_KEYS)
    try:
        return _validator(key)
    except SchemaError as exc:
        raise DefinitionError(
            f"capability {capability}: invalid JSON Schema: {one_line(exc.message)}"
        ) from exc


@functools.lru_cache(maxsize=1024)
def _validator(schema_json: bytes) -> Draft202012Validator:
    schema = orjson.loads(schema_json)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def validators_for(
    node_id: str, produces: Collection[str], schemas: Mapping[str, Mapping[str, Any]]
) -> dict[str, Draft202012Validator]:
    """Validators for every capability a node produces; a missing schema is a graph bug."""
    missing = sorted(set(produces).difference(schemas))
    if missing:
        raise DefinitionError(f"node {node_id}: no schema for capability {', '.join(missing)}")
    return {cap: validator_for(cap, schemas[cap]) for cap in produces}


def parse_outputs(
    node_id: str,
    stdout: bytes,
    validators: Mapping[str, Draft202012Validator],
    *,
    redact: Callable[[str], str] = str,
) -> dict[str, Any]:
    """The capability values in `stdout`, or `OutputError` with a one-line reason.

    `validators` maps each produced capability to its validator (`validators_for`);
    `redact` masks secrets in any text quoted from the output before it is shortened.
    """
    if not stdout.strip():
        if not validators:
            return {}
        raise OutputError(f"node {node_id}: stdout is empty, expected {_names(validators)}")
    try:
        value = orjson.loads(stdout)
    except orjson.JSONDecodeError:
        text = redact(stdout.decode("utf-8", "replace"))[:_PREVIEW]
        raise OutputError(
            f"node {node_id}: stdout is not JSON (first {_PREVIEW} chars: {text!r})"
        ) from None
    if not isinstance(value, dict):
        raise OutputError(
            f"node {node_id}: stdout is a JSON {type(value).__name__}, expected an object"
        )
    if value.keys() != validators.keys():
        missing = sorted(validators.keys() - value.keys())
        extra = sorted(value.keys() - validators.keys())
        parts = [f"missing {', '.join(missing)}"] if missing else []
        parts += [f"unexpected {', '.join(extra)}"] if extra else []
        raise OutputError(f"node {node_id}: output keys do not match produces ({'; '.join(parts)})")
    for capability, validator in validators.items():
        error = best_match(validator.iter_errors(value[capability]))
        if error is not None:
            raise OutputError(
                f"node {node_id}: output {capability}{_json_path(error)}: "
                f"{one_line(redact(error.message))}"
            )
    return value


def _json_path(error: ValidationError) -> str:
    return "".join(
        f"[{part}]" if isinstance(part, int) else f".{part}" for part in error.absolute_path
    )


def _names(validators: Mapping[str, object]) -> str:
    return "an object with " + ", ".join(sorted(validators))
