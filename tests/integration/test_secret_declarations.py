"""Declaring a node's secrets in Nickel: what the contract accepts, and where it points
when it refuses (real py-nickel, through the loader)."""

from __future__ import annotations

from pathlib import Path

import pytest

from stratum.graph import SecretRef, check_definitions, load_graph

ROOT = Path(__file__).resolve().parents[2]
LIB = ROOT / "nickel" / "lib"


def workflow(folder: Path, node: str) -> Path:
    folder.mkdir(exist_ok=True)
    (folder / "run.nu").write_text("def main [] { $in | ignore }\n")
    file = folder / "flow.ncl"
    file.write_text(
        f'{{\n  nodes = [\n    {{ id = "step", handler = "run.nu", {node} }},\n  ],\n}}\n'
    )
    return file


def test_secrets_are_loaded_as_references(tmp_path: Path) -> None:
    workflow(
        tmp_path,
        'secrets = [{ path = "stratum/release/registry", key = "token", env = "REGISTRY_TOKEN" },'
        ' { mount = "kv", path = "ci/signing", key = "key", env = "SIGNING_KEY" }]',
    )
    node = load_graph(tmp_path, LIB).nodes["step"]
    assert node.secrets == (
        SecretRef(path="stratum/release/registry", key="token", env="REGISTRY_TOKEN"),
        SecretRef(mount="kv", path="ci/signing", key="key", env="SIGNING_KEY"),
    )


def test_existing_definitions_still_load_and_declare_no_secrets_by_default() -> None:
    graph = load_graph(ROOT / "nickel" / "workflows", LIB)
    assert [n.id for n in graph.nodes.values() if n.secrets] == ["upload-assets"]
    assert graph.nodes["prepare-release"].secrets == ()


@pytest.mark.parametrize(
    ("secrets", "message"),
    [
        ('[{ path = "a", key = "k", env = "PATH" }]', "PATH is set by Stratum itself"),
        ('[{ path = "a", key = "k", env = "STRATUM_NODE" }]', "STRATUM_NODE is set by Stratum"),
        ('[{ path = "a", key = "k", env = "lower" }]', "environment variable name must match"),
        ('[{ path = "a/../b", key = "k", env = "X" }]', "a secret path must match"),
        ('[{ path = "a/*", key = "k", env = "X" }]', "a secret path must match"),
        ('[{ path = "a", key = "", env = "X" }]', "a secret key must match"),
        (
            '[{ path = "a", key = "k", env = "X" }, { path = "b", key = "k", env = "X" }]',
            "two secrets use the variable X",
        ),
        ('[{ path = "a", key = "k", env = "X", value = "inline" }]', "extra field `value`"),
    ],
)
def test_bad_declarations_are_refused(tmp_path: Path, secrets: str, message: str) -> None:
    workflow(tmp_path, f"secrets = {secrets}")
    problems = check_definitions(tmp_path, LIB)
    assert len(problems) == 1 and message in problems[0].message, problems
    assert problems[0].file.name == "flow.ncl"  # located in the workflow, not the library


def test_a_node_with_secrets_needs_a_whole_second(tmp_path: Path) -> None:
    workflow(tmp_path, 'timeout = 0.5, secrets = [{ path = "a", key = "k", env = "X" }]')
    (problem,) = check_definitions(tmp_path, LIB)
    assert "needs a timeout of at least 1 second" in problem.message
