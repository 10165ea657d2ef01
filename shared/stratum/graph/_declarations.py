"""From each file's evaluated JSON to nodes and schemas, and the checks across files.

Runs after Nickel has accepted every file on its own; what is left is what one file cannot
see: script files on disk, ids and schemas declared in two files, and schema validity.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from pydantic import BaseModel, ConfigDict, ValidationError

from stratum.graph._locate import Locator
from stratum.graph.model import ActionNode
from stratum.graph.problems import DefinitionProblem

_SCRIPT_FIELDS = ("handler", "compensate")


class FileDeclarations(BaseModel):
    """What one workflow file declares (node scripts already absolute)."""

    model_config = ConfigDict(frozen=True)

    file: Path
    nodes: tuple[ActionNode, ...]
    schemas: dict[str, dict[str, Any]]


class Merged(BaseModel):
    """All declarations in one namespace (first declaration wins) and what clashed."""

    model_config = ConfigDict(frozen=True)

    nodes: dict[str, ActionNode]
    schemas: dict[str, dict[str, Any]]
    problems: tuple[DefinitionProblem, ...]


def read_file_declarations(
    file: Path, data: Any, locate: Locator
) -> tuple[FileDeclarations, list[DefinitionProblem]]:
    """Nodes (with `handler`/`compensate` resolved against the file's folder, and the file's
    `on_failure` where a node declares none) and schemas from one file's JSON, plus a
    problem per script that does not exist."""
    nodes: list[ActionNode] = []
    problems: list[DefinitionProblem] = []
    on_failure = data.get("on_failure", "compensate")
    for raw in data.get("nodes", []):
        fields = dict(raw, source=file)
        fields.setdefault("on_failure", on_failure)
        node_id = str(raw.get("id"))
        for field in _SCRIPT_FIELDS:
            if field not in raw:
                continue
            script = (file.parent / raw[field]).resolve()
            fields[field] = script
            if not script.is_file():
                line, column = locate.value(file, field, raw[field])
                problems.append(
                    DefinitionProblem(
                        file=file,
                        line=line,
                        column=column,
                        message=f"node '{node_id}': `{field}` script '{raw[field]}' "
                        f"does not exist (looked for {script})",
                    )
                )
        try:
            nodes.append(ActionNode.model_validate(fields))
        except ValidationError as exc:  # only if model.py and stratum.ncl disagree
            error = exc.errors()[0]
            where = ".".join(str(part) for part in error["loc"])
            line, column = locate.value(file, "id", node_id)
            problems.append(
                DefinitionProblem(
                    file=file,
                    line=line,
                    column=column,
                    message=f"node '{node_id}': `{where}`: {error['msg']}",
                )
            )
    schemas = dict(data.get("capabilities", {}))
    return FileDeclarations(file=file, nodes=tuple(nodes), schemas=schemas), problems


def merge(declarations: Sequence[FileDeclarations], locate: Locator) -> Merged:
    """Put every file's nodes and schemas together; duplicate ids, conflicting schemas and
    invalid JSON Schemas are problems naming both places."""
    nodes: dict[str, ActionNode] = {}
    schemas: dict[str, dict[str, Any]] = {}
    schema_files: dict[str, Path] = {}
    problems: list[DefinitionProblem] = []
    for declared in declarations:
        for node in declared.nodes:
            first = nodes.setdefault(node.id, node)
            if first is not node:
                line, column = locate.value(declared.file, "id", node.id)
                problems.append(
                    DefinitionProblem(
                        file=declared.file,
                        line=line,
                        column=column,
                        message=f"duplicate node id '{node.id}': already declared in "
                        f"{_place(first.source or declared.file, locate, node.id)}",
                    )
                )
        for name, schema in sorted(declared.schemas.items()):
            line, column = locate.field(declared.file, name)
            if name in schemas:
                if schemas[name] != schema:
                    problems.append(
                        DefinitionProblem(
                            file=declared.file,
                            line=line,
                            column=column,
                            message=f"capability '{name}' has a different schema in "
                            f"{_field_place(schema_files[name], locate, name)}",
                        )
                    )
                continue
            schemas[name] = schema
            schema_files[name] = declared.file
            try:
                Draft202012Validator.check_schema(schema)
            except SchemaError as exc:
                problems.append(
                    DefinitionProblem(
                        file=declared.file,
                        line=line,
                        column=column,
                        message=f"capability '{name}' is not a valid JSON Schema: "
                        f"{exc.message} (at `{exc.json_path}`)",
                    )
                )
    return Merged(nodes=nodes, schemas=schemas, problems=tuple(problems))


def unschemaed_products(merged: Merged, locate: Locator) -> list[DefinitionProblem]:
    """A produced capability needs a schema: node outputs are validated against it."""
    problems = []
    for node_id, node in sorted(merged.nodes.items()):
        for capability in sorted(set(node.produces) - merged.schemas.keys()):
            file = node.source or Path(".")
            line, column = locate.value(file, "id", node_id)
            problems.append(
                DefinitionProblem(
                    file=file,
                    line=line,
                    column=column,
                    message=f"node '{node_id}' produces '{capability}', which has no "
                    "schema under `capabilities` in any workflow file",
                )
            )
    return problems


def _place(file: Path, locate: Locator, node_id: str) -> str:
    line, column = locate.value(file, "id", node_id)
    return DefinitionProblem(file=file, line=line, column=column, message="").location


def _field_place(file: Path, locate: Locator, name: str) -> str:
    line, column = locate.field(file, name)
    return DefinitionProblem(file=file, line=line, column=column, message="").location
