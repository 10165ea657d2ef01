"""What a node's credential may do, decided without talking to Vault (pure).

A node's policy grants `read` on exactly the KV v2 data paths it declares, nothing else;
it is named after the node and a hash of its rules, so two versions of a node never share
(or overwrite) a policy while runs of both are in flight, and writing it again is a no-op.
"""

from __future__ import annotations

import hashlib
import math

from stratum.graph.model import ActionNode, SecretRef


def data_path(secret: SecretRef) -> str:
    """The API path a KV version 2 read of `secret` goes to."""
    return f"{secret.mount}/data/{secret.path}"


def node_policy(node: ActionNode) -> tuple[str, str]:
    """(name, HCL rules) of the policy for `node`'s credentials.

    Paths are plain segments (stratum.ncl's `SecretPath`: no globs, no quotes), so each
    rule matches one path exactly."""
    paths = sorted({data_path(secret) for secret in node.secrets})
    rules = "".join(f'path "{path}" {{\n  capabilities = ["read"]\n}}\n' for path in paths)
    digest = hashlib.sha256(rules.encode()).hexdigest()[:12]
    return f"stratum-{node.id}-{digest}", rules


def token_ttl(timeout: float) -> int:
    """Whole seconds a node's credential lives: never longer than the node may run (Vault
    counts TTLs in whole seconds, and reads a TTL below 1 s as "the default")."""
    ttl = math.floor(timeout)
    if ttl < 1:
        raise ValueError(f"a credential needs a node timeout of 1 s or more, got {timeout:g}")
    return ttl
