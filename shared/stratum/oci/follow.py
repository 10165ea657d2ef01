"""Definitions that live in a registry: pulled before the first load, then followed.

Every `interval` seconds the reference is resolved again; a new manifest digest is pulled,
verified and loaded. A refused artifact (tampered, unverifiable) leaves the previous graph
live with the reason as the graph error — the definitions are degraded, as after a bad
local edit (`stratum.telemetry.health`) — and is not pulled again until the reference moves; moved
back to the artifact in force, that one is loaded again, which clears the error. A
registry that does not answer is only logged (the graph in force is fine).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from stratum.errors import ArtifactError
from stratum.graph.registry import GraphRegistry
from stratum.oci.pull import Pulled, pull
from stratum.oci.ref import parse_ref
from stratum.oci.registry import Registry

log = logging.getLogger("stratum.oci")


class RegistryDefinitions:
    """The artifact an `oci://` reference names, kept in `cache`."""

    def __init__(self, ref: str, cache: Path) -> None:
        self.ref = parse_ref(ref)
        self.cache = cache
        self.digest: str | None = None  # the digest loaded (or offered to Nickel) last
        self._refused: str | None = None

    def pull(self) -> Pulled:
        """The artifact the reference names now, verified; ArtifactError if refused."""
        pulled = pull(self.ref, self.cache)
        self.digest = pulled.digest
        return pulled

    def newer(self) -> Pulled | None:
        """A newly published artifact, verified, or None if the reference has not moved
        (or moved to one already refused). ArtifactError if the new one is refused. After
        a refusal, the reference moved back to the artifact in force yields that one (from
        the cache, verified again): loading it ends the refusal."""
        try:
            digest = Registry(self.ref).resolve()
        except ArtifactError as error:
            log.warning(
                "could not poll the definitions' registry; keeping the graph",
                extra={"error": str(error)},
            )
            return None
        if digest == self._refused or (digest == self.digest and self._refused is None):
            return None
        try:
            pulled = pull(self.ref, self.cache, digest)
        except ArtifactError:
            self._refused = digest
            raise
        self.digest, self._refused = digest, None
        return pulled


async def follow(source: RegistryDefinitions, graphs: GraphRegistry, interval: float) -> None:
    """Poll `source` forever and load what it yields into `graphs`."""
    while True:
        await asyncio.sleep(interval)
        try:
            pulled = await asyncio.to_thread(source.newer)
        except ArtifactError as error:
            graphs.refuse(f"{source.ref}: {error}")
            continue
        except Exception:  # a bug or a full disk must not end the polling for good
            log.exception("polling the definitions failed; trying again next time")
            continue
        if pulled is not None:
            log.info("new definitions published", extra={"digest": pulled.digest})
            await asyncio.to_thread(graphs.reload, pulled.folder)  # Nickel off the event loop
