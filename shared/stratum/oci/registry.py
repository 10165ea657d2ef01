"""The one module that talks to an OCI registry, through the ORAS SDK.

Requests fail in seconds: the SDK's own retry (five more tries, sleeping 3 s to 83 s) is
left out, and every request has a timeout, so a registry that is down is an error at once
rather than minutes of silence. Errors become ArtifactError naming the registry.
"""

from __future__ import annotations

import functools
import json
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import oras.defaults
import oras.provider
import requests

from stratum.errors import ArtifactError
from stratum.oci.layers import CONFIG_MEDIA_TYPE, LAYER_MEDIA_TYPE, sha256_hex
from stratum.oci.ref import OciRef

TIMEOUT = 30.0
_ACCEPT = ", ".join(oras.defaults.default_manifest_accepted_media_types)


class _Oras(oras.provider.Registry):  # type: ignore[misc]
    # the undecorated request: no sleeping retries (see the module docstring)
    do_request = oras.provider.Registry.do_request.__wrapped__


class Registry:
    """One registry, for the artifacts of one reference."""

    def __init__(self, ref: OciRef) -> None:
        self.ref = ref
        self._oras = _Oras(hostname=ref.registry, insecure=ref.plain_http)
        session: Any = self._oras.session
        session.request = functools.partial(session.request, timeout=TIMEOUT)
        self._base = f"{'http' if ref.plain_http else 'https'}://{ref.registry}"

    def push(
        self,
        files: Mapping[str, Path],
        annotations: Mapping[str, Mapping[str, str]],
        manifest_annotations: Mapping[str, str],
        config: Mapping[str, Any],
    ) -> str:
        """Push one layer per file (`annotations` per relative path) under the reference's
        tag; the manifest's digest."""
        with tempfile.TemporaryDirectory(prefix="stratum-publish-") as scratch:
            by_blob = {str(path.resolve()): dict(annotations[name]) for name, path in files.items()}
            annotation_file = Path(scratch, "annotations.json")
            annotation_file.write_text(json.dumps(by_blob))
            config_file = Path(scratch, "config.json")
            config_file.write_text(json.dumps(dict(config), sort_keys=True))
            response = self._call(
                "push",
                self._oras.push,
                target=self.ref.target,
                files=[f"{blob}:{LAYER_MEDIA_TYPE}" for blob in by_blob],
                disable_path_validation=True,
                annotation_file=str(annotation_file),
                manifest_annotations=dict(manifest_annotations),
                manifest_config=f"{config_file}:{CONFIG_MEDIA_TYPE}",
                quiet=True,
            )
        digest = response.headers.get("Docker-Content-Digest", "")
        if not digest:
            raise ArtifactError(f"{self.ref}: the registry did not say the manifest's digest")
        return str(digest)

    def resolve(self) -> str:
        """The manifest digest the reference names now (its tag may have moved)."""
        if self.ref.digest:
            return self.ref.digest
        response = self._request("HEAD", f"/manifests/{self.ref.tag}")
        digest = response.headers.get("Docker-Content-Digest", "")
        if not digest:
            raise ArtifactError(f"{self.ref}: the registry did not say the manifest's digest")
        return str(digest)

    def manifest(self, digest: str) -> dict[str, Any]:
        """The manifest with that digest, checked to hash to it."""
        content = self._request("GET", f"/manifests/{digest}").content
        actual = f"sha256:{sha256_hex(content)}"
        if actual != digest:
            raise ArtifactError(f"{self.ref}: manifest {digest} was served as {actual}")
        manifest: dict[str, Any] = json.loads(content)
        return manifest

    def download(self, digest: str, target: Path) -> None:
        """Write the blob `digest` to `target` as served (not verified here)."""
        container = self._oras.get_container(self.ref.target)
        written = self._call("download", self._oras.download_blob, container, digest, str(target))
        if written != str(target):  # the SDK hands back /dev/null for an empty blob it lacks
            target.write_bytes(b"")

    def _request(self, method: str, path: str) -> requests.Response:
        url = f"{self._base}/v2/{self.ref.repository}{path}"
        response: requests.Response = self._call(
            "request", self._oras.do_request, url, method, headers={"Accept": _ACCEPT}
        )
        if response.status_code == 404:
            raise ArtifactError(f"{self.ref}: no such artifact in the registry")
        if response.status_code >= 400:
            raise ArtifactError(f"{self.ref}: the registry answered HTTP {response.status_code}")
        return response

    def _call(self, what: str, call: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return call(*args, **kwargs)
        except requests.ConnectionError:
            raise ArtifactError(f"registry {self.ref.registry} is not reachable") from None
        except (requests.RequestException, ValueError, OSError) as error:
            raise ArtifactError(f"{self.ref}: {what} failed: {error}") from None
