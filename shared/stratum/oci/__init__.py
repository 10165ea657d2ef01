"""Workflow definitions distributed as OCI artifacts (ORAS): publish, pull and verify.

`publish` typechecks, scans for secrets, exports and pushes a definitions folder;
`pull` fetches an artifact and verifies every layer's sha256 against its annotation before
it lands in the cache Nickel loads from; `RegistryDefinitions` + `follow` keep a running
Stratum on the artifact a reference names. The pure checks are in `layers`.
"""

from stratum.oci.follow import RegistryDefinitions, follow
from stratum.oci.publish import Published, publish
from stratum.oci.pull import Pulled, pull, verify_folder
from stratum.oci.ref import OciRef, is_oci, parse_ref

__all__ = [
    "OciRef",
    "Published",
    "Pulled",
    "RegistryDefinitions",
    "follow",
    "is_oci",
    "parse_ref",
    "publish",
    "pull",
    "verify_folder",
]
