"""`stratum publish`: typecheck -> secret scan -> export -> sha256 per layer -> push.

Each step refuses with everything it found before anything reaches the registry.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from stratum.errors import ArtifactError, DefinitionError
from stratum.graph import check_definitions, load_graph
from stratum.graph.problems import display_path
from stratum.oci.export import export_files, scripts_outside
from stratum.oci.layers import GRAPH_VERSION, layer_annotations
from stratum.oci.ref import OciRef
from stratum.oci.registry import Registry
from stratum.oci.scan import scan_files


class Published(BaseModel):
    model_config = ConfigDict(frozen=True)

    ref: OciRef
    digest: str
    version: str
    files: tuple[str, ...]


def publish(ref: OciRef, definitions: Path, lib_dir: Path) -> Published:
    """Publish the definitions folder as an artifact at `ref`; what was pushed.

    DefinitionError if Nickel refuses a file; ArtifactError if a file holds something
    that looks like a secret (file:line and the detector, never the value), a script lies
    outside the folder, or the registry fails.
    """
    problems = check_definitions(definitions, lib_dir)
    if problems:
        first, *rest = problems
        raise DefinitionError("\n".join([first.render(), *(f"also {p}" for p in rest)]))
    graph = load_graph(definitions, lib_dir)
    if outside := scripts_outside(graph, definitions):
        raise ArtifactError(
            "scripts outside the definitions folder would not ship: " + "; ".join(outside)
        )
    files = export_files(definitions, lib_dir)
    if findings := scan_files(files.values()):
        lines = [
            f"{display_path(f.file)}:{f.line}: possible secret ({', '.join(f.kinds)}); "
            "nothing was published"
            for f in findings
        ]
        raise ArtifactError("\n".join([lines[0], *(f"also {line}" for line in lines[1:])]))
    with tempfile.TemporaryDirectory(prefix="stratum-export-") as scratch:
        # what is hashed is what is pushed, even if the folder changes meanwhile
        staged = {name: Path(scratch, f"{index:05d}") for index, name in enumerate(files)}
        for name, copy in staged.items():
            shutil.copyfile(files[name], copy)
        annotations = {
            name: layer_annotations(name, copy.read_bytes()) for name, copy in staged.items()
        }
        digest = Registry(ref).push(
            staged,
            annotations,
            manifest_annotations={GRAPH_VERSION: graph.version},
            config={"graph_version": graph.version, "files": sorted(files)},
        )
    return Published(ref=ref, digest=digest, version=graph.version, files=tuple(files))
