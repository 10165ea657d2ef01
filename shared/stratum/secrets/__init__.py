"""Node secrets from Vault/OpenBao: a credential per attempt, scoped and short-lived.

`SecretStore.open` connects to the configured Vault, or starts a dev OpenBao
(`LocalOpenBao`) seeded with the example secrets; its `broker.credentials` is the
executor's `CredentialsHook`. `node_policy` and `token_ttl` decide what a credential may
do and for how long, without I/O.
"""

from .broker import Lease, SecretBroker
from .dev_server import LocalOpenBao, bao_binary
from .policy import data_path, node_policy, token_ttl
from .store import SecretStore, SeedSecret, load_seed, seed

__all__ = [
    "Lease",
    "LocalOpenBao",
    "SecretBroker",
    "SecretStore",
    "SeedSecret",
    "bao_binary",
    "data_path",
    "load_seed",
    "node_policy",
    "seed",
    "token_ttl",
]
