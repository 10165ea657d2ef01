"""Pull an artifact of definitions, verify it whole, and keep it in a cache by digest.

Layers are downloaded into a scratch folder inside the cache and each is checked against
its annotation before it is given its name; only a fully verified folder is renamed to
`<cache>/sha256-<hex>/` (its manifest beside it as `sha256-<hex>.json`). Nickel is only
ever pointed at such a folder. A cached copy is verified again before it is reused.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from stratum.errors import ArtifactError
from stratum.oci.layers import GRAPH_VERSION, Layer, check_content, check_listing, layers_of
from stratum.oci.ref import OciRef
from stratum.oci.registry import Registry

log = logging.getLogger("stratum.oci")


class Pulled(BaseModel):
    """A verified artifact on disk: the folder to load definitions from."""

    model_config = ConfigDict(frozen=True)

    ref: OciRef
    digest: str
    folder: Path
    version: str | None  # the graph version the publisher saw (with its own library)


def pull(ref: OciRef, cache: Path, digest: str | None = None) -> Pulled:
    """The artifact `ref` names (or the manifest `digest` of its repository), verified;
    ArtifactError if it cannot be fetched or any layer is not what was published."""
    registry = Registry(ref)
    digest = digest or registry.resolve()
    folder = cache / digest.replace(":", "-")
    manifest_file = folder.with_name(folder.name + ".json")
    if folder.is_dir() and manifest_file.is_file():
        manifest = json.loads(manifest_file.read_bytes())
        try:
            verify_folder(folder, layers_of(manifest))
            return _pulled(ref, digest, folder, manifest)
        except ArtifactError as error:
            log.warning(
                "cached artifact changed on disk; pulling it again", extra={"error": str(error)}
            )
            shutil.rmtree(folder)
    manifest = registry.manifest(digest)
    layers = layers_of(manifest)
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache, prefix=".pull-") as scratch:
        staging = Path(scratch, "files")
        for index, layer in enumerate(layers):
            blob = Path(scratch, f"blob-{index}")
            registry.download(layer.digest, blob)
            check_content(layer, file_sha256(blob))
            target = staging / layer.path
            target.parent.mkdir(parents=True, exist_ok=True)
            blob.replace(target)
        staging.mkdir(exist_ok=True)
        Path(scratch, "manifest.json").write_text(json.dumps(manifest))
        if folder.exists():  # a partial copy (no manifest beside it)
            shutil.rmtree(folder)
        staging.replace(folder)
        Path(scratch, "manifest.json").replace(manifest_file)
    log.info("pulled definitions", extra={"ref": str(ref), "digest": digest, "folder": str(folder)})
    return _pulled(ref, digest, folder, manifest)


def verify_folder(folder: Path, layers: list[Layer]) -> None:
    """ArtifactError unless `folder` holds exactly `layers`, each with its published bytes."""
    present = [
        path.relative_to(folder).as_posix()
        for path in folder.rglob("*")
        if path.is_file() or path.is_symlink()
    ]
    check_listing(layers, present)
    for layer in layers:
        check_content(layer, file_sha256(folder / layer.path))


def file_sha256(path: Path) -> str:
    with path.open("rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def _pulled(ref: OciRef, digest: str, folder: Path, manifest: dict[str, Any]) -> Pulled:
    version = (manifest.get("annotations") or {}).get(GRAPH_VERSION)
    return Pulled(ref=ref, digest=digest, folder=folder, version=version)
