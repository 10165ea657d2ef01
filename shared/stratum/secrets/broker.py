"""Per-attempt credentials from Vault/OpenBao: scoped, short-lived, revoked when done.

For one attempt of a node, `SecretBroker.credentials` makes sure the node's policy exists
(read on exactly its declared paths), creates a child token of Stratum's own with that
policy alone, TTL = explicit max TTL = the node's timeout and no renewal, reads the
declared keys with it, and revokes it when the attempt ends — success, failure, timeout or
cancellation alike. Only the token's accessor leaves this module (as the attempt's
`credential_lease`): Vault can revoke and look a token up by it, nobody can use it.

hvac is synchronous, so every call runs in a worker thread; a call that is under way when
its attempt is cancelled still finishes, and a token issued after its attempt gave up on
it is revoked as soon as it exists.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import hvac
import hvac.exceptions

from stratum.errors import ConfigError, CredentialsError, DependencyUnavailableError
from stratum.executor.credentials import NO_CREDENTIALS, Credentials
from stratum.graph.model import ActionNode, SecretRef

from .errors import credentials_error, reason
from .policy import node_policy, token_ttl

log = logging.getLogger("stratum.secrets")
REQUEST_TIMEOUT = 10.0


@dataclass(frozen=True)
class Lease:
    """A token issued for one attempt. `accessor` is safe to record; `token` is the
    credential itself and never leaves the broker except to read with."""

    accessor: str
    ttl: int
    token: str = field(repr=False)


class SecretBroker:
    """Issues and revokes per-attempt credentials with Stratum's own Vault token."""

    def __init__(self, addr: str, token: str, *, timeout: float = REQUEST_TIMEOUT) -> None:
        self.addr = addr
        self._timeout = timeout
        self._admin = hvac.Client(url=addr, token=token, timeout=timeout)
        self._policies: set[str] = set()  # written by this broker: content-named, so final
        self._late: set[asyncio.Task[None]] = set()

    async def check(self) -> None:
        """Fail fast at start-up: the store must answer and accept our token."""
        try:
            await asyncio.to_thread(self._admin.auth.token.lookup_self)
        except OSError as exc:
            raise DependencyUnavailableError(
                f"Vault at {self.addr} is not reachable: {reason(exc)}"
            ) from None
        except hvac.exceptions.VaultError as exc:
            raise ConfigError(f"Vault at {self.addr} refuses vault_token: {reason(exc)}") from None

    @asynccontextmanager
    async def credentials(self, node: ActionNode, key: str) -> AsyncIterator[Credentials]:
        """The declared secrets of `node` for the attempt `key` (a `CredentialsHook`)."""
        if not node.secrets:
            yield NO_CREDENTIALS
            return
        async with self.lease(node, key) as lease:
            env = await asyncio.to_thread(self._read, lease, node.secrets)
            yield Credentials(env=env, lease=lease.accessor)

    @asynccontextmanager
    async def lease(self, node: ActionNode, key: str) -> AsyncIterator[Lease]:
        """A token that may read exactly `node`'s secret paths, revoked on the way out."""
        issuing = asyncio.ensure_future(asyncio.to_thread(self._issue, node, key))
        try:
            lease = await asyncio.shield(issuing)
        except asyncio.CancelledError:
            issuing.add_done_callback(lambda done: self._revoke_late(done, node.id))
            raise
        try:
            yield lease
        finally:
            # a thread cannot be cancelled: once started, the revocation completes
            await asyncio.to_thread(self._revoke, lease, node.id)

    async def write(self, mount: str, path: str, data: Mapping[str, str]) -> None:
        """Store a KV v2 secret (seeding a dev store; tests)."""
        try:
            await asyncio.to_thread(
                self._admin.secrets.kv.v2.create_or_update_secret,
                path=path,
                secret=dict(data),
                mount_point=mount,
            )
        except (OSError, hvac.exceptions.VaultError) as exc:
            raise credentials_error(f"cannot write {mount}/{path}", exc) from None

    async def close(self) -> None:
        """Wait for revocations of tokens whose attempts were cancelled while issuing."""
        if self._late:
            await asyncio.gather(*self._late, return_exceptions=True)
        self._admin.adapter.close()

    def _issue(self, node: ActionNode, key: str) -> Lease:
        name, rules = node_policy(node)
        ttl = f"{token_ttl(node.timeout)}s"
        try:
            if name not in self._policies:
                self._admin.sys.create_or_update_acl_policy(name=name, policy=rules)
                self._policies.add(name)
            reply: dict[str, Any] = self._admin.auth.token.create(
                policies=[name],
                no_default_policy=True,  # not even lookup-self: only the declared reads
                renewable=False,
                ttl=ttl,
                explicit_max_ttl=ttl,
                display_name=f"stratum-{node.id}",
                meta={"idempotency_key": key},  # ties Vault's audit log to the attempt
            )
        except (OSError, hvac.exceptions.VaultError) as exc:
            raise credentials_error("cannot issue a credential", exc) from None
        auth = reply["auth"]
        return Lease(
            accessor=str(auth["accessor"]),
            ttl=int(auth["lease_duration"]),
            token=str(auth["client_token"]),
        )

    def _read(self, lease: Lease, secrets: Sequence[SecretRef]) -> dict[str, str]:
        """Each declared key, read with the attempt's own token (one read per path)."""
        reader = hvac.Client(url=self.addr, token=lease.token, timeout=self._timeout)
        documents: dict[tuple[str, str], Mapping[str, Any]] = {}
        env: dict[str, str] = {}
        try:
            for secret in secrets:
                where = f"{secret.mount}/{secret.path}"
                place = (secret.mount, secret.path)
                if place not in documents:
                    try:
                        reply = reader.secrets.kv.v2.read_secret_version(
                            path=secret.path,
                            mount_point=secret.mount,
                            raise_on_deleted_version=True,
                        )
                    except (OSError, hvac.exceptions.VaultError) as exc:
                        raise credentials_error(f"cannot read {where}", exc) from None
                    documents[place] = reply["data"]["data"] or {}
                value = documents[place].get(secret.key)
                if not isinstance(value, str):
                    what = "no key" if value is None else "no string under the key"
                    raise CredentialsError(f"{where} has {what} {secret.key!r}")
                env[secret.env] = value
        finally:
            reader.adapter.close()
        return env

    def _revoke(self, lease: Lease, node_id: str) -> None:
        """Revoke by accessor; on failure the token still dies at its TTL (the node's
        timeout), so the attempt's outcome stands and the failure is logged."""
        try:
            self._admin.auth.token.revoke_accessor(lease.accessor)
        except (OSError, hvac.exceptions.VaultError) as exc:
            log.warning(
                "could not revoke a node's credential; it expires with its TTL",
                extra={
                    "node": node_id,
                    "credential_lease": lease.accessor,
                    "ttl": lease.ttl,
                    "error": reason(exc),
                },
            )

    def _revoke_late(self, issuing: asyncio.Future[Lease], node_id: str) -> None:
        """A token that came into being after its attempt was cancelled: revoke it now."""
        if issuing.cancelled() or issuing.exception() is not None:
            return
        lease = issuing.result()
        task = asyncio.ensure_future(asyncio.to_thread(self._revoke, lease, node_id))
        self._late.add(task)
        task.add_done_callback(self._late.discard)
