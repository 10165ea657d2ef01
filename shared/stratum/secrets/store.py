"""The secret store `stratum up` uses: a configured Vault/OpenBao, or a dev OpenBao of its own
seeded with the example secrets.

A configured store is never seeded: placeholder values have no business in a real Vault.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from stratum.errors import ConfigError
from stratum.graph.model import SECRET_PATH

from .broker import SecretBroker
from .dev_server import LocalOpenBao


class SeedSecret(BaseModel):
    """One KV v2 secret to write into a dev store."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    mount: str = Field(default="secret", pattern=SECRET_PATH)
    path: str = Field(pattern=SECRET_PATH)
    data: dict[str, str]


class SeedFile(BaseModel):
    """`deploy/dev-secrets.json`: placeholder secrets for the examples, not secret."""

    model_config = ConfigDict(frozen=True)

    secrets: tuple[SeedSecret, ...] = ()


def load_seed(file: Path) -> tuple[SeedSecret, ...]:
    """The secrets in a seed file; ConfigError naming the file if it is malformed."""
    try:
        return SeedFile.model_validate_json(file.read_bytes()).secrets
    except (OSError, ValidationError) as exc:
        first = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else exc.strerror
        raise ConfigError(f"{file}: not a seed file of secrets: {first}") from None


async def seed(broker: SecretBroker, secrets: Sequence[SeedSecret]) -> None:
    """Write every seed secret (the same values again on every start)."""
    for secret in secrets:
        await broker.write(secret.mount, secret.path, secret.data)


@dataclass
class SecretStore:
    """Where node secrets come from while Stratum runs; `stop` ends what `open` started."""

    broker: SecretBroker
    server: LocalOpenBao | None = None

    @property
    def addr(self) -> str:
        return self.broker.addr

    @classmethod
    async def open(
        cls, addr: str, token: str, state_dir: Path, seed_file: Path | None = None
    ) -> SecretStore:
        """The store at `addr` (checked now, so a wrong address or token fails start-up);
        without `addr`, a dev OpenBao under `state_dir` seeded from `seed_file`."""
        if addr:
            if not token:
                raise ConfigError("vault_addr is set but vault_token is empty")
            broker = SecretBroker(addr, token)
            await broker.check()
            return cls(broker)
        server = LocalOpenBao(state_dir)
        await server.start()
        broker = SecretBroker(server.url, server.token)
        try:
            if seed_file is not None and seed_file.is_file():
                await seed(broker, load_seed(seed_file))
        except BaseException:
            await broker.close()
            server.stop()
            raise
        return cls(broker, server)

    async def stop(self) -> None:
        await self.broker.close()
        if self.server is not None:
            self.server.stop()
