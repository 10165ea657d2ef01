"""Which files an artifact of definitions carries.

Every regular, non-hidden file under the definitions folder (scripts may read files beside
them), each its own layer under its path relative to that folder. The Nickel library
(`lib_dir`, `stratum.ncl`) does not ship: a pulled artifact is loaded against the library
of the Stratum that runs it, the contract it enforces. So every handler and compensate
script must lie inside the folder, or the pulled copy would not run.
"""

from __future__ import annotations

from pathlib import Path

from stratum.errors import ArtifactError
from stratum.graph import ActionGraph
from stratum.oci.layers import safe_path


def export_files(definitions: Path, lib_dir: Path) -> dict[str, Path]:
    """Relative path -> file, sorted; ArtifactError for a symbolic link (it could point
    anywhere on the publisher's machine)."""
    root, lib = definitions.resolve(), lib_dir.resolve()
    files: dict[str, Path] = {}
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if any(part.startswith(".") for part in relative.parts) or path.is_relative_to(lib):
            continue
        if path.is_symlink():
            raise ArtifactError(f"{path}: symbolic links are not published; copy the file in")
        if path.is_file():
            files[safe_path(relative.as_posix())] = path
    if not files:
        raise ArtifactError(f"nothing to publish in {root}")
    return files


def scripts_outside(graph: ActionGraph, definitions: Path) -> list[str]:
    """`node: script` for every script the artifact would not carry."""
    root = definitions.resolve()
    return [
        f"{node.id}: {script}"
        for node in graph.nodes.values()
        for script in (node.handler, node.compensate)
        if script is not None and not script.resolve().is_relative_to(root)
    ]
