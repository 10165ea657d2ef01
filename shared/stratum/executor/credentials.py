"""Secrets for one attempt, from a hook the caller passes: the executor never knows where
they come from.

For each attempt of a node that declares `secrets`, the hook (an async context manager
factory) yields `Credentials` and takes them back when the attempt ends — however it ends:
success, failure, timeout or cancellation. The values reach that attempt's process
environment and its redactor, nothing else; `lease` (an id the store can revoke by, never
the credential itself) is what the attempt's record keeps.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from pydantic import BaseModel, ConfigDict, Field

from stratum.errors import CredentialsError
from stratum.graph.model import ActionNode


class Credentials(BaseModel):
    """What one attempt may use: variables holding secret values, and the lease they were
    issued under."""

    model_config = ConfigDict(frozen=True)

    # the values are secrets: kept out of repr() so a logged object cannot leak them
    env: dict[str, str] = Field(default_factory=dict, repr=False)
    lease: str | None = None


# (node, idempotency key of the attempt) -> its credentials, released when the block ends
CredentialsHook = Callable[[ActionNode, str], AbstractAsyncContextManager[Credentials]]

NO_CREDENTIALS = Credentials()


@asynccontextmanager
async def credentials_for(
    hook: CredentialsHook | None, node: ActionNode, key: str
) -> AsyncIterator[Credentials]:
    """The credentials of one attempt: none for a node without secrets (the hook is not
    asked); `CredentialsError` if the node declares secrets and there is no hook, or the
    hook cannot provide every declared variable."""
    if not node.secrets:
        yield NO_CREDENTIALS
        return
    if hook is None:
        raise CredentialsError("the node declares secrets but no secret store is configured")
    async with hook(node, key) as credentials:
        missing = sorted({secret.env for secret in node.secrets} - credentials.env.keys())
        if missing:
            raise CredentialsError(f"the secret store gave no value for {', '.join(missing)}")
        yield credentials
