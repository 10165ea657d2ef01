"""The pure checks of an OCI artifact of definitions: references, safe paths, the
manifest's layers, digests against annotations, the listing of a pulled folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from stratum.config import load_settings
from stratum.errors import ArtifactError
from stratum.oci.layers import (
    SHA256,
    TITLE,
    Layer,
    check_content,
    check_listing,
    layer_annotations,
    layers_of,
    safe_path,
    sha256_hex,
)
from stratum.oci.ref import is_oci, parse_ref

HELLO = sha256_hex(b"hello")


def layer(path: str, content: bytes = b"hello", **annotations: str) -> dict[str, Any]:
    digest = sha256_hex(content)
    return {
        "mediaType": "application/vnd.stratum.definition.file.v1",
        "digest": f"sha256:{digest}",
        "size": len(content),
        "annotations": {TITLE: path, SHA256: digest, **annotations},
    }


def manifest(*layers: dict[str, Any]) -> dict[str, Any]:
    return {"schemaVersion": 2, "layers": list(layers)}


@pytest.mark.parametrize(
    ("value", "registry", "repository", "tag", "digest", "plain"),
    [
        (
            "oci://127.0.0.1:5000/stratum/defs:v1",
            "127.0.0.1:5000",
            "stratum/defs",
            "v1",
            None,
            True,
        ),
        ("oci://localhost/defs", "localhost", "defs", "latest", None, True),
        ("registry.example:443/a/b/c:1.2", "registry.example:443", "a/b/c", "1.2", None, False),
        (
            f"oci://[::1]:5000/defs@sha256:{HELLO}",
            "[::1]:5000",
            "defs",
            "latest",
            f"sha256:{HELLO}",
            True,
        ),
    ],
)
def test_references(
    value: str, registry: str, repository: str, tag: str, digest: str | None, plain: bool
) -> None:
    ref = parse_ref(value)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (
        registry,
        repository,
        tag,
        digest,
    )
    assert ref.plain_http is plain
    assert parse_ref(str(ref)) == ref


@pytest.mark.parametrize(
    "value",
    ["oci://", "oci://host", "oci://host:5000/UPPER", "oci://host/a:b:c", "oci://h/a@md5:1"],
)
def test_bad_references(value: str) -> None:
    with pytest.raises(ArtifactError, match="is not an OCI reference"):
        parse_ref(value)


def test_is_oci() -> None:
    assert is_oci("oci://h/r") and not is_oci("nickel/workflows") and not is_oci(None)


@pytest.mark.parametrize("path", ["crate.ncl", "crate/build.nu", "a/b/c-d_e.nu"])
def test_safe_paths(path: str) -> None:
    assert safe_path(path) == path


@pytest.mark.parametrize(
    "path",
    [
        "",
        "/etc/passwd",
        "../x.nu",
        "a/../../x",
        "a/./b",
        "./a",
        "a//b",
        "a/",
        ".hidden",
        "a/.git/x",
        "a\\b",
        "a\x00b",
    ],
)
def test_unsafe_paths(path: str) -> None:
    with pytest.raises(ArtifactError, match="unsafe path"):
        safe_path(path)


def test_layers_of_a_good_manifest() -> None:
    layers = layers_of(manifest(layer("crate/crate.ncl"), layer("crate/lint.nu", b"lint")))
    assert [item.path for item in layers] == ["crate/crate.ncl", "crate/lint.nu"]
    assert layers[0] == Layer(
        path="crate/crate.ncl", sha256=HELLO, digest=f"sha256:{HELLO}", size=5
    )


@pytest.mark.parametrize(
    ("layers", "why"),
    [
        ([{"digest": f"sha256:{HELLO}", "size": 5}], "has no org.opencontainers.image.title"),
        ([layer("a.nu", **{SHA256: "0" * 64})], "does not match its annotation"),
        ([layer("../escape.nu")], "unsafe path"),
        ([layer("/abs.nu")], "unsafe path"),
        ([layer("a.nu"), layer("a.nu", b"other")], "appears twice"),
        ([layer("a"), layer("a/b.nu", b"other")], "lies under another layer"),
    ],
)
def test_layers_of_a_bad_manifest(layers: list[dict[str, Any]], why: str) -> None:
    with pytest.raises(ArtifactError, match=why):
        layers_of(manifest(*layers))


def test_not_a_manifest() -> None:
    with pytest.raises(ArtifactError, match="not an OCI image manifest"):
        layers_of({"schemaVersion": 1})


def test_content_must_hash_to_the_annotation() -> None:
    [item] = layers_of(manifest(layer("crate/crate.ncl")))
    check_content(item, HELLO)
    other = sha256_hex(b"hellO")
    with pytest.raises(ArtifactError) as refused:
        check_content(item, other)
    assert str(refused.value) == (
        f"layer crate/crate.ncl was changed after it was published: expected sha256:{HELLO}, "
        f"got sha256:{other}; refusing to load the artifact"
    )


def test_listing_must_be_exactly_the_layers() -> None:
    layers = layers_of(manifest(layer("a.nu"), layer("b/c.ncl", b"c")))
    check_listing(layers, ["b/c.ncl", "a.nu"])
    with pytest.raises(ArtifactError, match=r"annotated layer\(s\) missing: b/c.ncl"):
        check_listing(layers, ["a.nu"])
    with pytest.raises(ArtifactError, match=r"not in the artifact's manifest: evil.nu"):
        check_listing(layers, ["a.nu", "b/c.ncl", "evil.nu"])


def test_annotations_of_a_file() -> None:
    assert layer_annotations("crate/x.nu", b"hello") == {TITLE: "crate/x.nu", SHA256: HELLO}


def test_an_oci_definitions_setting_is_kept_apart_from_the_folder(tmp_path: Path) -> None:
    ref = "oci://127.0.0.1:5000/stratum/defs:v1"
    settings = load_settings(
        None, root=tmp_path, environ={"STRATUM_DEFINITIONS": ref, "STRATUM_OCI_POLL_INTERVAL": "5"}
    )
    assert settings.definitions_ref == ref
    assert settings.definitions == tmp_path / ".stratum" / "oci"
    assert settings.oci_poll_interval == 5.0
    local = load_settings(None, root=tmp_path, environ={})
    assert local.definitions_ref == "" and local.definitions == tmp_path / "nickel" / "workflows"
