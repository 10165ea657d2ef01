"""Load the Cedar policy folder, or list everything wrong with it.

The folder holds one schema (`*.cedarschema`, Cedar syntax, or `*.cedarschema.json`),
the policies (every `*.cedar` file below it, hidden paths skipped) and optionally
`entities.json`: the principals and groups the policies know by name (Cedar's JSON
entity format). Every policy must carry a unique `@id("...")`: Denied runs and audit
events name the policies that decided by it. A policy may say why in `@reason("...")`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cedarpy

from stratum.authz import entities as cedar
from stratum.authz._statements import Statement, split_statements
from stratum.errors import PolicyError
from stratum.graph.problems import DefinitionProblem, display_path

ENTITIES_FILE = "entities.json"
SNIPPET_LINES = 6


@dataclass(frozen=True)
class Policies:
    """A validated policy set, parsed once and reused by every decision."""

    folder: Path
    version: str
    schema: cedarpy.Schema
    policy_set: cedarpy.PolicySet
    entities: cedarpy.Entities
    # (type, id) of every entity `entities.json` declares (their principals are complete)
    declared: frozenset[tuple[str, str]]
    # policy id -> its `@reason`, and -> where it is (`file:line`)
    reasons: dict[str, str] = field(default_factory=dict)
    places: dict[str, str] = field(default_factory=dict)


def load_policies(folder: Path) -> Policies:
    """The policies in `folder`, validated against its schema.

    Raises PolicyError if anything is wrong: the message starts with the first problem as
    `file:line:column: what` and the policy's text, then one line per further problem.
    """
    scan = _scan(folder)
    if scan.problems or scan.policies is None:
        first, *rest = scan.problems
        raise PolicyError("\n".join([first.render(), *(f"also {p}" for p in rest)]))
    return scan.policies


def check_policies(folder: Path) -> list[DefinitionProblem]:
    """Every problem in the policy folder (empty when `load_policies` would succeed)."""
    return _scan(folder).problems


@dataclass
class _Scan:
    problems: list[DefinitionProblem] = field(default_factory=list)
    policies: Policies | None = None


@dataclass
class _Policy:
    id: str
    body: dict[str, Any]
    place: str


def _scan(folder: Path) -> _Scan:
    root = folder.resolve()
    scan = _Scan()
    if not root.is_dir():
        scan.problems.append(DefinitionProblem(file=root, message="policies folder not found"))
        return scan
    digest = hashlib.sha256()
    schema = _schema(root, scan, digest.update)
    policies: dict[str, _Policy] = {}
    files = _files(root)
    for file in files:
        text = file.read_text(encoding="utf-8")
        digest.update(f"policy {file.relative_to(root)}\0{text}\0".encode())
        for statement in split_statements(text):
            _read_policy(file, statement, schema, policies, scan)
    directory: list[dict[str, Any]] = []
    entities_file = root / ENTITIES_FILE
    if entities_file.is_file():
        text = entities_file.read_text(encoding="utf-8")
        digest.update(f"entities\0{text}\0".encode())
        directory = _directory(entities_file, text, scan)
    if not scan.problems and schema is not None:
        scan.policies = _assemble(root, schema, policies, directory, digest.hexdigest(), scan)
    return scan


def _assemble(
    root: Path,
    schema: cedarpy.Schema,
    policies: dict[str, _Policy],
    directory: list[dict[str, Any]],
    digest: str,
    scan: _Scan,
) -> Policies | None:
    """The checked pieces as one policy set, if the entities and the requests Stratum
    builds fit the schema."""
    try:
        entities = cedarpy.Entities.from_json_str(json.dumps(directory), schema)
    except ValueError as error:
        message = f"entities do not fit the schema: {error}"
        scan.problems.append(DefinitionProblem(file=root / ENTITIES_FILE, message=message))
        return None
    policy_set = cedarpy.PolicySet.from_json_str(
        json.dumps(
            {
                "staticPolicies": {p.id: p.body for p in policies.values()},
                "templates": {},
                "templateLinks": [],
            }
        )
    )
    loaded = Policies(
        folder=root,
        version=digest[:16],
        schema=schema,
        policy_set=policy_set,
        entities=entities,
        declared=frozenset(cedar.uid_key(entity["uid"]) for entity in directory),
        reasons={
            p.id: str(p.body.get("annotations", {}).get("reason") or "") for p in policies.values()
        },
        places={p.id: p.place for p in policies.values()},
    )
    # the requests Stratum builds must fit the schema, or every decision would fail
    problem = cedar.probe(loaded.schema, loaded.entities)
    if problem:
        scan.problems.append(DefinitionProblem(file=_schema_files(root)[0], message=problem))
        return None
    return loaded


def _schema(root: Path, scan: _Scan, fingerprint: Callable[[bytes], None]) -> cedarpy.Schema | None:
    candidates = _schema_files(root)
    if len(candidates) != 1:
        found = ", ".join(display_path(c) for c in candidates) or "none"
        scan.problems.append(
            DefinitionProblem(
                file=root,
                message=f"needs exactly one *.cedarschema or *.cedarschema.json; found {found}",
            )
        )
        return None
    file = candidates[0]
    text = file.read_text(encoding="utf-8")
    fingerprint(f"schema\0{text}\0".encode())
    try:
        if file.name.endswith(".json"):
            return cedarpy.Schema.from_json_str(text)
        return cedarpy.Schema.from_str(text)
    except ValueError as error:
        scan.problems.append(DefinitionProblem(file=file, message=f"schema: {error}"))
        return None


def _schema_files(root: Path) -> list[Path]:
    return sorted(
        path
        for pattern in ("*.cedarschema", "*.cedarschema.json")
        for path in root.glob(pattern)
        if path.is_file()
    )


def _files(root: Path) -> list[Path]:
    return sorted(
        path
        for path in root.rglob("*.cedar")
        if path.is_file() and not any(part.startswith(".") for part in path.relative_to(root).parts)
    )


def _read_policy(
    file: Path,
    statement: Statement,
    schema: cedarpy.Schema | None,
    policies: dict[str, _Policy],
    scan: _Scan,
) -> None:
    def problem(message: str) -> None:
        snippet = "\n".join(statement.text.splitlines()[:SNIPPET_LINES])
        scan.problems.append(
            DefinitionProblem(
                file=file,
                line=statement.line,
                column=statement.column,
                message=message,
                snippet=snippet,
            )
        )

    try:
        parsed = json.loads(cedarpy.policies_to_json_str(statement.text))
    except ValueError as error:
        problem(f"Cedar syntax: {error}")
        return
    if parsed.get("templates"):
        problem("templates (`?principal`, `?resource`) are not supported; name the principal")
        return
    bodies = list(parsed["staticPolicies"].values())
    if len(bodies) != 1:
        problem(f"expected one policy here, found {len(bodies)}")
        return
    body = bodies[0]
    ident = body.get("annotations", {}).get("id")
    if not ident:
        problem('every policy needs an @id("...") annotation (Denied runs name policies by it)')
        return
    place = f"{display_path(file)}:{statement.line}"
    if ident in policies:
        problem(f"policy id {ident!r} is already used at {policies[ident].place}")
        return
    if schema is not None:
        result = cedarpy.validate_policies(statement.text, schema)
        if not result.validation_passed:
            for found in result.errors:
                message = found.error.replace(f"for policy `{found.policy_id}`, ", "")
                problem(f"policy {ident!r}: {message}")
            return
    policies[ident] = _Policy(id=ident, body=body, place=place)


def _directory(file: Path, text: str, scan: _Scan) -> list[dict[str, Any]]:
    """`entities.json` with each principal completed (see `entities.complete`)."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        scan.problems.append(
            DefinitionProblem(file=file, line=error.lineno, column=error.colno, message=error.msg)
        )
        return []
    if not isinstance(document, list):
        scan.problems.append(DefinitionProblem(file=file, message="must be a JSON array"))
        return []
    completed = []
    for index, entity in enumerate(document):
        try:
            completed.append(cedar.complete(entity))
        except ValueError as error:
            scan.problems.append(DefinitionProblem(file=file, message=f"entity {index}: {error}"))
    return completed
