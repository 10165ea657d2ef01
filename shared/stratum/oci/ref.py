"""`oci://HOST[:PORT]/REPOSITORY[:TAG][@sha256:HEX]`: where an artifact of definitions lives."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict

from stratum.errors import ArtifactError

SCHEME = "oci://"
_REF = re.compile(
    r"^(?P<registry>[A-Za-z0-9.\-]+(?::[0-9]+)?|\[[0-9A-Fa-f:]+\](?::[0-9]+)?)"
    r"/(?P<repository>[a-z0-9]+(?:[._\-/][a-z0-9]+)*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}))?"
    r"(?:@(?P<digest>sha256:[0-9a-f]{64}))?$"
)
_LOOPBACK = ("127.0.0.1", "localhost", "[::1]")


class OciRef(BaseModel):
    """A parsed reference. Without a tag or digest the tag is `latest`; with a digest the
    artifact is pinned (a tag beside it is only a label)."""

    model_config = ConfigDict(frozen=True)

    registry: str
    repository: str
    tag: str = "latest"
    digest: str | None = None

    @property
    def target(self) -> str:
        """The ORAS target: `registry/repository:tag`, or `@digest` when pinned."""
        base = f"{self.registry}/{self.repository}"
        return f"{base}@{self.digest}" if self.digest else f"{base}:{self.tag}"

    def at(self, digest: str) -> OciRef:
        """The same artifact pinned to a manifest digest."""
        return self.model_copy(update={"digest": digest})

    @property
    def plain_http(self) -> bool:
        """Loopback registries speak plain HTTP (as Docker and ORAS assume); others HTTPS."""
        if self.registry.startswith("["):
            host = self.registry[: self.registry.index("]") + 1]
        else:
            host = self.registry.split(":")[0]
        return host in _LOOPBACK

    def __str__(self) -> str:
        return SCHEME + self.target


def is_oci(value: object) -> bool:
    """Whether a definitions setting names an OCI artifact rather than a folder."""
    return isinstance(value, str) and value.startswith(SCHEME)


def parse_ref(value: str) -> OciRef:
    """Parse `oci://...` (the scheme may be left out); ArtifactError naming what is wrong."""
    raw = value[len(SCHEME) :] if value.startswith(SCHEME) else value
    match = _REF.match(raw)
    if match is None:
        raise ArtifactError(
            f"{value!r} is not an OCI reference: expected "
            "oci://HOST[:PORT]/REPOSITORY[:TAG][@sha256:DIGEST]"
        )
    return OciRef(
        registry=match["registry"],
        repository=match["repository"],
        tag=match["tag"] or "latest",
        digest=match["digest"],
    )
