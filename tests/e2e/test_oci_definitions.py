"""Definitions distributed as OCI artifacts, against a real registry (Debian's
`docker-registry`, distribution 2.8, from `make install`) on a free loopback port with its
storage in a temp folder: publish and pull back, run a pipeline from pulled definitions,
refuse a tampered layer at start and while running (the previous graph stays live),
refuse a secret and a broken file at publish.

Blobs are content-addressed and shared by every repository of the registry, so each test
publishes its own copy of the example definitions made unique by a marker comment: a
tampered blob is that test's alone.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from stratum.errors import ArtifactError, DefinitionError
from stratum.graph import load_graph
from stratum.oci import RegistryDefinitions, parse_ref, publish, pull
from stratum.oci.layers import GRAPH_VERSION, SHA256, TITLE, sha256_hex
from stratum_host.server import StratumServer
from tests.conftest import ROOT, Vault, eventually, make_settings, stop_process
from tests.e2e.conftest import Harness, running

REGISTRY_BIN = Path(sys.executable).parent / "docker-registry"
STRATUM = str(Path(sys.executable).parent / "stratum")
LIB = ROOT / "nickel" / "lib"
EXAMPLES = ROOT / "nickel" / "workflows"
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
CRATE = {"source": "nickel/examples/sample-crate"}
FAKE_KEY = (
    "AKIA" + "IOSFODNN7EXAMPLE"
)  # AWS's documented example key, split so no scanner trips here


@dataclass(frozen=True)
class LocalRegistry:
    host: str  # 127.0.0.1:PORT
    storage: Path

    def ref(self, repository: str, tag: str = "latest") -> str:
        return f"oci://{self.host}/{repository}:{tag}"

    def blob(self, content: bytes) -> Path:
        """Where the registry keeps the blob of `content` on disk."""
        digest = sha256_hex(content)
        return self.storage / f"docker/registry/v2/blobs/sha256/{digest[:2]}/{digest}/data"

    def manifest(self, repository: str, tag: str) -> tuple[bytes, dict[str, Any]]:
        response = httpx.get(
            f"http://{self.host}/v2/{repository}/manifests/{tag}",
            headers={"Accept": MANIFEST_TYPE},
        )
        response.raise_for_status()
        return response.content, response.json()

    def tag(self, repository: str, source: str, target: str) -> None:
        """Point `target` at the manifest `source` names, as a registry client would."""
        content, _ = self.manifest(repository, source)
        response = httpx.put(
            f"http://{self.host}/v2/{repository}/manifests/{target}",
            content=content,
            headers={"Content-Type": MANIFEST_TYPE},
        )
        response.raise_for_status()


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRegistry]:
    if not REGISTRY_BIN.exists():
        pytest.fail(f"{REGISTRY_BIN} is missing: run `make install`")
    folder = tmp_path_factory.mktemp("registry")
    storage, port = folder / "storage", free_port()
    config = folder / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: error\n"
        f"storage:\n  filesystem:\n    rootdirectory: {storage}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n  secret: stratum-tests\n"
    )
    with (folder / "registry.log").open("w") as log:
        process = subprocess.Popen(
            [str(REGISTRY_BIN), "serve", str(config)], stdout=log, stderr=log
        )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v2/", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    f"registry did not start: {(folder / 'registry.log').read_text()}"
                )
            time.sleep(0.05)
        yield LocalRegistry(f"127.0.0.1:{port}", storage)
    finally:
        stop_process(process)


def definitions_copy(folder: Path, marker: str = "") -> Path:
    """The example definitions, with crate.ncl made unique by a comment."""
    shutil.copytree(EXAMPLES, folder)
    crate = folder / "crate" / "crate.ncl"
    crate.write_text(crate.read_text() + f"\n# {marker or uuid.uuid4().hex}\n")
    return folder


def tamper(registry: LocalRegistry, content: bytes) -> None:
    """Flip one bit of the stored blob of `content` (same size: only a hash can tell)."""
    blob = registry.blob(content)
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0x01
    blob.write_bytes(bytes(data))


def test_publish_then_pull_gives_the_same_files_and_graph(
    registry: LocalRegistry, tmp_path: Path
) -> None:
    ref = parse_ref(registry.ref("stratum/examples", "v1"))
    published = publish(ref, EXAMPLES, LIB)
    local = load_graph(EXAMPLES, LIB)
    assert published.version == local.version

    _, manifest = registry.manifest("stratum/examples", "v1")
    assert manifest["annotations"][GRAPH_VERSION] == local.version
    files = sorted(p.relative_to(EXAMPLES).as_posix() for p in EXAMPLES.rglob("*") if p.is_file())
    layers = {layer["annotations"][TITLE]: layer for layer in manifest["layers"]}
    assert sorted(layers) == files == sorted(published.files)
    for name, layer in layers.items():
        assert layer["annotations"][SHA256] == sha256_hex((EXAMPLES / name).read_bytes())
        assert layer["digest"] == f"sha256:{layer['annotations'][SHA256]}"

    cache = tmp_path / "cache"
    pulled = pull(ref, cache)
    assert pulled.digest == published.digest
    assert pulled.folder == cache / published.digest.replace(":", "-")
    for name in files:
        assert (pulled.folder / name).read_bytes() == (EXAMPLES / name).read_bytes()
    assert load_graph(pulled.folder, LIB).version == local.version == pulled.version

    # cached by digest: a copy changed on disk is noticed and pulled again
    (pulled.folder / "crate" / "lint.nu").write_text("changed locally")
    again = pull(ref.at(published.digest), cache)
    assert again.folder == pulled.folder
    assert (again.folder / "crate" / "lint.nu").read_bytes() == (
        EXAMPLES / "crate" / "lint.nu"
    ).read_bytes()


def test_tampered_layer_is_refused_naming_the_layer_and_digests(
    registry: LocalRegistry, tmp_path: Path
) -> None:
    folder = definitions_copy(tmp_path / "defs")
    ref = parse_ref(registry.ref("stratum/tampered-pull"))
    publish(ref, folder, LIB)
    crate = (folder / "crate" / "crate.ncl").read_bytes()
    tamper(registry, crate)

    cache = tmp_path / "cache"
    with pytest.raises(ArtifactError) as refused:
        pull(ref, cache)
    message = str(refused.value)
    assert "layer crate/crate.ncl was changed after it was published" in message
    assert f"expected sha256:{sha256_hex(crate)}" in message
    assert "got sha256:" in message
    assert [p.name for p in cache.iterdir()] == []  # nothing of it left for Nickel to read


def test_unreachable_registry_fails_fast(tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(ArtifactError, match=r"registry 127\.0\.0\.1:\d+ is not reachable"):
        pull(parse_ref(f"oci://127.0.0.1:{free_port()}/stratum/none"), tmp_path)
    assert time.monotonic() - started < 5


def test_publish_refuses_a_secret_naming_file_and_line(
    registry: LocalRegistry, tmp_path: Path
) -> None:
    folder = definitions_copy(tmp_path / "defs")
    lint = folder / "crate" / "lint.nu"
    lines = lint.read_text().splitlines()
    lines.insert(1, f'let aws_key = "{FAKE_KEY}"')
    lint.write_text("\n".join(lines) + "\n")

    env = dict(os.environ, STRATUM_LIB_DIR=str(LIB))  # run from tmp_path: paths relative to it
    result = subprocess.run(
        [STRATUM, "publish", registry.ref("stratum/leaky"), "--definitions", str(folder)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert "defs/crate/lint.nu:2: possible secret (AWS Access Key" in result.stderr
    assert FAKE_KEY not in result.stderr + result.stdout
    missing = httpx.get(f"http://{registry.host}/v2/stratum/leaky/manifests/latest")
    assert missing.status_code == 404


def test_publish_refuses_a_broken_definition(registry: LocalRegistry, tmp_path: Path) -> None:
    folder = definitions_copy(tmp_path / "defs")
    (folder / "crate" / "crate.ncl").write_text("{ nodes = [ { id = 1 } ], ")
    with pytest.raises(DefinitionError, match=r"crate\.ncl:1"):
        publish(parse_ref(registry.ref("stratum/broken")), folder, LIB)
    result = subprocess.run(
        [STRATUM, "publish", registry.ref("stratum/broken"), "-d", str(folder)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1 and "crate.ncl:1" in result.stderr
    missing = httpx.get(f"http://{registry.host}/v2/stratum/broken/manifests/latest")
    assert missing.status_code == 404


async def test_a_pipeline_runs_from_pulled_definitions(
    registry: LocalRegistry, tmp_path: Path, nats_url: str, openbao: Vault
) -> None:
    ref = registry.ref("stratum/run", "v1")
    published = await asyncio.to_thread(publish, parse_ref(ref), EXAMPLES, LIB)
    vault = {"vault_addr": openbao.addr, "vault_token": openbao.token}
    settings = make_settings(tmp_path, nats_url, definitions=ref, **vault)
    assert settings.definitions_ref == ref
    async with running(settings, http=False) as harness:
        graphs = harness.server.graphs
        assert graphs.current is not None and graphs.current.version == published.version
        assert graphs.definitions == settings.data_dir / "oci" / published.digest.replace(":", "-")
        view = await harness.finished(await harness.emit("crate.push", CRATE))
        assert view["status"] == "Succeeded", view
        assert view["graph_version"] == published.version


async def test_a_tampered_artifact_stops_the_start(
    registry: LocalRegistry, tmp_path: Path, nats_url: str, openbao: Vault
) -> None:
    folder = definitions_copy(tmp_path / "defs")
    ref = registry.ref("stratum/tampered-start")
    await asyncio.to_thread(publish, parse_ref(ref), folder, LIB)
    tamper(registry, (folder / "crate" / "crate.ncl").read_bytes())
    vault = {"vault_addr": openbao.addr, "vault_token": openbao.token}
    server = StratumServer(make_settings(tmp_path, nats_url, definitions=ref, **vault))
    try:
        with pytest.raises(ArtifactError, match=r"layer crate/crate\.ncl was changed after"):
            await server.start(http=False)
    finally:
        await server.stop()


def test_stratum_up_refuses_a_tampered_artifact(registry: LocalRegistry, tmp_path: Path) -> None:
    folder = definitions_copy(tmp_path / "defs")
    ref = registry.ref("stratum/tampered-up")
    publish(parse_ref(ref), folder, LIB)
    tamper(registry, (folder / "crate" / "crate.ncl").read_bytes())
    env = dict(os.environ, STRATUM_DATA_DIR=str(tmp_path / "data"), STRATUM_WATCH="false")
    result = subprocess.run(
        [STRATUM, "up", "--definitions", ref],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: layer crate/crate.ncl was changed after it was published")
    assert not (tmp_path / "data" / "endpoint.json").exists()


async def test_a_tampered_update_keeps_the_previous_graph_live(
    registry: LocalRegistry, tmp_path: Path, nats_url: str, openbao: Vault
) -> None:
    repository = "stratum/live"
    v1 = definitions_copy(tmp_path / "v1")
    first = await asyncio.to_thread(publish, parse_ref(registry.ref(repository, "live")), v1, LIB)
    vault = {"vault_addr": openbao.addr, "vault_token": openbao.token}
    settings = make_settings(
        tmp_path,
        nats_url,
        definitions=registry.ref(repository, "live"),
        oci_poll_interval=0.2,
        **vault,
    )
    async with running(settings) as harness:
        graphs = harness.server.graphs
        assert graphs.current is not None and graphs.current.version == first.version
        await asyncio.to_thread(registry.tag, repository, "live", "first")  # v1 kept
        view = await harness.finished(await harness.emit("crate.push", CRATE))
        assert view["status"] == "Succeeded" and view["graph_version"] == first.version

        # v2 is published under another tag, tampered in storage, then moved to `live`
        v2 = definitions_copy(tmp_path / "v2")
        staging = parse_ref(registry.ref(repository, "staging"))
        await asyncio.to_thread(publish, staging, v2, LIB)
        tamper(registry, (v2 / "crate" / "crate.ncl").read_bytes())
        await asyncio.to_thread(registry.tag, repository, "staging", "live")

        async def refused() -> str | None:
            return graphs.error if graphs.error and "crate/crate.ncl" in graphs.error else None

        error = await eventually(refused, timeout=20)
        assert "was changed after it was published" in error and "expected sha256:" in error
        health = await healthz(harness)
        assert health["graph_version"] == first.version
        assert "layer crate/crate.ncl was changed after it was published" in health["graph_error"]
        # degraded, as after a bad local edit: still live, v1 serving, the reason and since
        assert health["status"] == "degraded"
        definitions = health["definitions"]
        assert definitions["degraded"] is True and definitions["version"] == first.version
        assert definitions["error"] == health["graph_error"] and definitions["since"]

        view = await harness.finished(await harness.emit("crate.push", CRATE))
        assert view["status"] == "Succeeded" and view["graph_version"] == first.version

        # `live` moved back to v1, the artifact in force: loaded again, no longer degraded
        await asyncio.to_thread(registry.tag, repository, "first", "live")

        async def recovered() -> dict[str, Any] | None:
            health = await healthz(harness)
            return health if health["status"] == "ok" else None

        definitions = (await eventually(recovered, timeout=20))["definitions"]
        assert definitions["version"] == first.version and definitions["error"] is None

        # a good v3 on `live`: loaded, the error cleared
        v3 = definitions_copy(tmp_path / "v3")
        third = await asyncio.to_thread(
            publish, parse_ref(registry.ref(repository, "live")), v3, LIB
        )

        async def loaded() -> bool:
            current = graphs.current
            return current is not None and current.version == third.version

        await eventually(loaded, timeout=20)
        assert graphs.error is None
        view = await harness.finished(await harness.emit("crate.push", CRATE))
        assert view["status"] == "Succeeded" and view["graph_version"] == third.version


async def healthz(harness: Harness) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=harness.server.http_url, timeout=5) as client:
        body: dict[str, Any] = (await client.get("/healthz")).json()
    return body


def test_a_refused_digest_is_not_pulled_again_until_the_ref_moves(
    registry: LocalRegistry, tmp_path: Path
) -> None:
    folder = definitions_copy(tmp_path / "defs")
    ref = registry.ref("stratum/follow", "live")
    publish(parse_ref(ref), folder, LIB)
    source = RegistryDefinitions(ref, tmp_path / "cache")
    source.pull()
    assert source.newer() is None  # unchanged

    bad = definitions_copy(tmp_path / "bad")
    publish(parse_ref(ref), bad, LIB)
    tamper(registry, (bad / "crate" / "crate.ncl").read_bytes())
    with pytest.raises(ArtifactError):
        source.newer()
    assert source.newer() is None  # the same refused digest: not fetched again

    good = definitions_copy(tmp_path / "good")
    published = publish(parse_ref(ref), good, LIB)
    pulled = source.newer()
    assert pulled is not None and pulled.digest == published.digest
    assert (
        json.loads((tmp_path / "cache" / f"{pulled.folder.name}.json").read_text())["annotations"][
            GRAPH_VERSION
        ]
        == published.version
    )


def test_check_and_plan_read_the_verified_artifact(registry: LocalRegistry, tmp_path: Path) -> None:
    """`stratum check` and `stratum plan` with oci:// definitions read that artifact alone
    (pulled and verified), not the whole cache; a tampered one is refused."""
    good = registry.ref("stratum/check", "v1")
    publish(parse_ref(good), EXAMPLES, LIB)
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRATUM_")}
    env |= {"STRATUM_DATA_DIR": str(tmp_path / "data"), "STRATUM_DEFINITIONS": good}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [STRATUM, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
        )

    checked = cli("check")
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.startswith(f"ok: {good},")
    planned = cli("plan", "crate.push", "--json")
    assert planned.returncode == 0, planned.stderr
    assert orjson.loads(planned.stdout)["stages"] == [["fmt-crate", "lint-crate"], ["build-crate"]]

    folder = definitions_copy(tmp_path / "defs")
    env["STRATUM_DEFINITIONS"] = bad = registry.ref("stratum/check-tampered")
    publish(parse_ref(bad), folder, LIB)
    tamper(registry, (folder / "crate" / "crate.ncl").read_bytes())
    refused = cli("check")
    assert refused.returncode == 1
    assert "layer crate/crate.ncl was changed after it was published" in refused.stderr
