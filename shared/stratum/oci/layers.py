"""What an artifact of definitions is made of, and the checks a pulled one must pass.

Pure: no I/O. One layer per file of the definitions folder, its relative path in the
standard title annotation and the sha256 of its content in `io.stratum.sha256`. A pulled
layer is accepted only when its path is safe and its bytes hash to both the annotation
and the layer's descriptor digest.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from pathlib import PurePosixPath
from typing import Any

from pydantic import BaseModel, ConfigDict

from stratum.errors import ArtifactError

TITLE = "org.opencontainers.image.title"
SHA256 = "io.stratum.sha256"
GRAPH_VERSION = "io.stratum.graph.version"
LAYER_MEDIA_TYPE = "application/vnd.stratum.definition.file.v1"
CONFIG_MEDIA_TYPE = "application/vnd.stratum.definitions.config.v1+json"


class Layer(BaseModel):
    """One file of the artifact, as its manifest describes it."""

    model_config = ConfigDict(frozen=True)

    path: str
    sha256: str  # hex, from the annotation
    digest: str  # `sha256:<hex>`, the descriptor's (what the registry serves it by)
    size: int


def sha256_hex(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def layer_annotations(path: str, content: bytes) -> dict[str, str]:
    """The annotations a file's layer is pushed with."""
    return {TITLE: safe_path(path), SHA256: sha256_hex(content)}


def safe_path(path: str) -> str:
    """`path` if it is a plain relative POSIX path inside the artifact; ArtifactError if it
    is absolute, climbs out (`..`), is hidden, or is otherwise odd."""
    pure = PurePosixPath(path)
    bad = (
        not path
        or "\\" in path
        or "\x00" in path
        or pure.is_absolute()
        or path != pure.as_posix()  # `a//b`, `./a`, a trailing slash
        or any(part in ("..", ".") or part.startswith(".") for part in pure.parts)
    )
    if bad:
        raise ArtifactError(f"unsafe path {path!r} in the artifact: refusing to load it")
    return path


def layers_of(manifest: Mapping[str, Any]) -> list[Layer]:
    """The artifact's files from its manifest, every one checked for a title, a sha256
    annotation agreeing with its descriptor, and a safe path no other file clashes with."""
    raw_layers = manifest.get("layers")
    if manifest.get("schemaVersion") != 2 or not isinstance(raw_layers, list):
        raise ArtifactError("not an OCI image manifest (schemaVersion 2 with layers)")
    layers: list[Layer] = []
    for index, raw in enumerate(raw_layers):
        annotations = raw.get("annotations") or {}
        path, annotated = annotations.get(TITLE), annotations.get(SHA256)
        if not path or not annotated:
            raise ArtifactError(
                f"layer {index} ({raw.get('digest')}) has no {TITLE} or {SHA256} annotation: "
                "not published by `stratum publish`, cannot be verified"
            )
        layer = Layer(
            path=safe_path(str(path)),
            sha256=str(annotated),
            digest=str(raw.get("digest", "")),
            size=int(raw.get("size", -1)),
        )
        if layer.digest != f"sha256:{layer.sha256}":
            raise ArtifactError(
                f"layer {layer.path}: descriptor digest {layer.digest} does not match its "
                f"annotation sha256:{layer.sha256}"
            )
        layers.append(layer)
    _check_clashes(layer.path for layer in layers)
    return layers


def _check_clashes(paths: Iterable[str]) -> None:
    seen: set[str] = set()
    for path in sorted(paths):
        if path in seen:
            raise ArtifactError(f"layer {path} appears twice in the artifact")
        parents = {str(parent) for parent in PurePosixPath(path).parents}
        if parents & seen:
            raise ArtifactError(f"layer {path} lies under another layer's file")
        seen.add(path)


def check_content(layer: Layer, actual_sha256: str) -> None:
    """ArtifactError naming the layer and both digests unless the content is what was
    published."""
    if actual_sha256 != layer.sha256:
        raise ArtifactError(
            f"layer {layer.path} was changed after it was published: expected sha256:"
            f"{layer.sha256}, got sha256:{actual_sha256}; refusing to load the artifact"
        )


def check_listing(layers: Iterable[Layer], present: Iterable[str]) -> None:
    """ArtifactError unless the files present are exactly the annotated layers."""
    expected, found = {layer.path for layer in layers}, set(present)
    if missing := sorted(expected - found):
        raise ArtifactError(f"annotated layer(s) missing: {', '.join(missing)}")
    if extra := sorted(found - expected):
        raise ArtifactError(f"file(s) not in the artifact's manifest: {', '.join(extra)}")
