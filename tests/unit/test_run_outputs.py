"""What the run detail shows of the nodes' outputs (`stratum_host.api.outputs`) and how `show`
prints it: masked by field name, cut past a size with a note, nodes in plan order. Pure."""

from __future__ import annotations

import json

import orjson

from stratum.telemetry.logs import REDACTED, masked
from stratum_host.api.outputs import Produced, node_outputs, shown
from stratum_host.cli.render import FIELD_LIMIT, outputs_tree
from tests.unit.test_cli_render import in_order, text_of


def test_credential_like_fields_are_masked_at_any_depth() -> None:
    value = {"url": "u", "apiToken": "t", "users": [{"name": "ci", "Password": "p"}]}
    assert masked(value) == {
        "url": "u",
        "apiToken": REDACTED,
        "users": [{"name": "ci", "Password": REDACTED}],
    }
    assert masked(["a", 1, None]) == ["a", 1, None]
    # a capability whose very name says credential is not shown at all
    outputs = node_outputs([Produced(node="n", capability="deploy-token", value={"a": 1})])
    assert outputs == {"n": {"deploy-token": {"value": REDACTED}}}


def test_a_value_over_the_limit_is_cut_saying_by_how_much_and_where_it_is_whole() -> None:
    value = {"lines": ["é" * 10] * 10}  # two bytes a character: never cut in half
    whole = orjson.dumps(value)
    assert shown(value, "/b/1", limit=len(whole)) == {"value": value}
    # the é are two bytes each from byte 11: the 10th starts at byte 29, the 30th byte
    assert whole.startswith(b'{"lines":["' + "é".encode())
    cut = shown(value, "/b/1", limit=30)
    assert cut["preview"] == whole[:29].decode()  # not half of it
    assert (cut["bytes"], cut["cut"], cut["whole"]) == (
        len(whole),
        len(whole) - 29,
        "/b/1/stdout.log",
    )
    assert shown(value, None, limit=30)["whole"] is None


def test_show_lists_outputs_by_node_in_plan_order_a_field_a_line() -> None:
    digest = "ab" * 32
    entries = [f"crate/src/file{i}.rs" for i in range(40)]
    produced = [
        Produced(
            node="build",
            capability="built-artifact",
            value={"entries": entries, "sha256": digest},
            bundle="/b/build",
        ),
        Produced(node="lint", capability="blob", value=["x" * 100] * 400, bundle="/b/lint"),
        Produced(node="lint", capability="count", value=3, bundle="/b/lint"),
    ]
    view = {
        "stages": [{"nodes": ["lint"]}, {"nodes": ["build"]}],
        "outputs": node_outputs(produced),
    }
    text = " ".join(text_of(outputs_tree(view), width=120).replace("│", " ").split())
    assert in_order(text, "outputs", "lint", "blob: [", "count: 3", "build", "built-artifact")
    # the digest stays whole beside a long list, which is cut saying where all of it is
    assert f'sha256: "{digest}"' in text
    listed = len(json.dumps(entries))
    assert f"(first {FIELD_LIMIT} of {listed} bytes; `stratum show --json` has it whole)" in text
    blob = view["outputs"]["lint"]["blob"]
    assert (
        f"(first {FIELD_LIMIT} of {blob['bytes']} bytes; whole value in /b/lint/stdout.log)" in text
    )
    assert outputs_tree({"outputs": {}}) is None
