"""Startup configuration: Nickel file first, then `STRATUM_*` environment overrides.

Built once in an adapter (`stratum up`, a container entrypoint); handlers receive plain
values, never this object.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from stratum.errors import ConfigError
from stratum.runs.tenant_limits import TenantLimits

ENV_PREFIX = "STRATUM_"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


class Settings(BaseModel):
    """Resolved configuration. Relative paths are resolved against `root`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    root: Path
    data_dir: Path
    definitions: Path
    lib_dir: Path
    # the Cedar policy folder: schema, `*.cedar` policies, optional entities.json
    policies: Path
    # `oci://HOST:PORT/REPO:TAG` (given as `definitions`): the definitions are that
    # artifact, pulled and verified into `definitions` (then <data_dir>/oci, the cache by
    # digest) and the reference polled every `oci_poll_interval` seconds (0: never)
    definitions_ref: str = ""
    oci_poll_interval: float = 30.0
    nats_url: str = ""
    subject_prefix: str = "stratum"
    surreal_url: str = ""
    surreal_namespace: str = "stratum"
    surreal_database: str = "main"
    surreal_user: str = ""
    surreal_password: str = ""
    # node secrets: a Vault/OpenBao address and Stratum's token there; no address: a dev
    # OpenBao of its own (stratum.secrets). The token stays out of repr().
    vault_addr: str = ""
    vault_token: str = Field(default="", repr=False)
    durable_writes: bool = True
    http_host: str = "127.0.0.1"
    http_port: int = 0
    nu_bin: str = ""
    nu_path: str = ""
    nu_tools: tuple[str, ...] = ()
    kill_grace: float = 1.0
    stage_concurrency: int = 32
    watch: bool = True
    stuck_after: float = 120.0
    nats_auth: bool = True
    # with a configured nats_url: a folder of NKey seeds `<identity>.seed` to connect as —
    # `stratum` for the core connection, each function under its own name (written with
    # the server's config by `stratum nats config`); empty: no credentials
    nats_seeds: str = ""
    dev_publishers: tuple[str, ...] = ()
    require_signatures: bool = True
    signature_window: float = 300.0
    duplicate_window: float = 120.0
    watchdog_interval: float = 15.0
    # per-tenant limits (concurrent runs, events per second): stratum.runs.tenant_limits
    tenant_limits: TenantLimits = TenantLimits()

    @property
    def database_url(self) -> str:
        """The SurrealDB URL to open: configured, or embedded on disk under data_dir."""
        return self.surreal_url or f"surrealkv://{self.data_dir / 'db'}"

    @property
    def endpoint_file(self) -> Path:
        """Where a running `stratum up` says where it listens."""
        return self.data_dir / "endpoint.json"

    def resolve_nu(self) -> Path:
        """The `nu` binary to run scripts with; DependencyUnavailableError if none."""
        from stratum.errors import DependencyUnavailableError

        candidates = [self.nu_bin] if self.nu_bin else [str(Path(sys.executable).parent / "nu")]
        candidates.append(shutil.which("nu") or "")
        for candidate in candidates:
            if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
                return Path(candidate)
        raise DependencyUnavailableError(
            "nu (Nushell) not found: run `make install`, or set STRATUM_NU_BIN"
        )


def load_settings(
    config_file: Path | None = None,
    *,
    root: Path | None = None,
    environ: dict[str, str] | None = None,
    overrides: dict[str, Any] | None = None,
) -> Settings:
    """Evaluate the Nickel config (if any), apply `STRATUM_*` env vars, then `overrides`."""
    base = (root or Path.cwd()).resolve()
    values: dict[str, Any] = {}
    if config_file is not None:
        values.update(_evaluate_nickel_config(config_file))
    values.update(_from_environment(os.environ if environ is None else environ))
    values.update(overrides or {})
    values.setdefault("data_dir", ".stratum")
    values.setdefault("definitions", "nickel/workflows")
    values.setdefault("lib_dir", "nickel/lib")
    values.setdefault("policies", "deploy/policies")
    if str(values["definitions"]).startswith("oci://"):  # an artifact, cached under data_dir
        values["definitions_ref"] = str(values["definitions"])
        values["definitions"] = Path(values["data_dir"]) / "oci"
    for key in ("data_dir", "definitions", "lib_dir", "policies"):
        values[key] = (base / Path(values[key])).resolve()
    try:
        return Settings(root=base, **values)
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        raise ConfigError(f"config field {field}: {first['msg']}") from None


def _evaluate_nickel_config(config_file: Path) -> dict[str, Any]:
    from stratum.graph._nickel import NickelFailure, evaluate_file

    if not config_file.is_file():
        raise ConfigError(f"config file {config_file} does not exist")
    lib = config_file.resolve().parent / "lib"
    try:
        parsed = evaluate_file(config_file.resolve(), [lib])
    except NickelFailure as error:
        message = ANSI.sub("", error.report).strip()
        raise ConfigError(f"{config_file}: {message}") from None
    if not isinstance(parsed, dict):
        raise ConfigError(f"{config_file}: must evaluate to a record")
    return parsed


_FIELD_TYPES = Settings.model_fields


def _from_environment(environ: dict[str, str] | os._Environ[str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        field = name[len(ENV_PREFIX) :].lower()
        if field not in _FIELD_TYPES or field == "root":
            continue
        is_list = field in ("nu_tools", "dev_publishers")
        values[field] = [item for item in raw.split(",") if item] if is_list else raw
    return values
