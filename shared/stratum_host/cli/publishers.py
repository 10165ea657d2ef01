"""`stratum publisher add|list|revoke`, and the seed `stratum emit` signs with.

`add` makes the key pair here, sends Stratum only the public key and prints the seed once
(`--save` also keeps it where `emit` looks for the tenant's seed).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import typer

from stratum.config import Settings
from stratum_host.cli.signed import api_auth

publisher_app = typer.Typer(no_args_is_help=True, help="Who may publish events, per tenant.")
SEED_ENV = "STRATUM_PUBLISHER_SEED_FILE"
ConfigOption = typer.Option(None, "--config", "-c", help="Nickel startup config")


def seed_for(settings: Settings, tenant: str, seed_file: Path | None) -> str | None:
    """The seed to sign an event of `tenant` with: `--seed-file`, else the file named by
    STRATUM_PUBLISHER_SEED_FILE, else `<data_dir>/publishers/<tenant>.seed`; None if none."""
    from stratum.trust.dev_publishers import seed_path

    path = seed_file or (Path(os.environ[SEED_ENV]) if os.environ.get(SEED_ENV) else None)
    path = path or seed_path(settings.data_dir, tenant)
    if not path.is_file():
        if seed_file is not None:
            from stratum_host.cli.main import fail

            fail(f"seed file {seed_file} does not exist")
        return None
    return path.read_text().strip()


def _call(settings: Settings, method: str, path: str, **kwargs: Any) -> Any:
    import httpx

    from stratum_host.cli.main import fail
    from stratum_host.server import read_endpoint

    base = read_endpoint(settings.data_dir)["http"]
    try:
        response = httpx.request(method, base + path, timeout=30, auth=api_auth(settings), **kwargs)
    except httpx.HTTPError as error:
        fail(f"Stratum is not reachable at {base} ({type(error).__name__})")
    body = response.json()
    if response.status_code >= 400:
        fail(body.get("error", f"HTTP {response.status_code}"))
    return body


@publisher_app.command("add")
def add(
    name: str,
    tenant: str = typer.Option(..., "--tenant", "-t"),
    save: bool = typer.Option(False, "--save", help="Also keep the seed for `stratum emit`"),
    config: Path | None = ConfigOption,
) -> None:
    """Register a publisher of TENANT; prints its seed once (Stratum keeps the public key)."""
    from stratum.trust.dev_publishers import seed_path, write_seed
    from stratum.trust.signing import new_user_seed, public_key
    from stratum_host.cli.main import out, settings_from

    settings = settings_from(config)
    seed = new_user_seed()
    body = {"name": name, "tenant": tenant, "public_key": public_key(seed)}
    _call(settings, "POST", "/api/publishers", json=body)
    out.print(f"publisher {name} of tenant {tenant}: {body['public_key']}")
    out.print("seed (shown once; sign with it, keep it secret):")
    out.print(seed, markup=False, highlight=False)
    if save:
        write_seed(seed_path(settings.data_dir, tenant), seed)
        out.print(f"saved for `stratum emit --tenant {tenant}`")


@publisher_app.command("list")
def listing(
    tenant: str | None = typer.Option(None, "--tenant", "-t"),
    as_json: bool = typer.Option(False, "--json"),
    config: Path | None = ConfigOption,
) -> None:
    """Registered publishers (public keys only)."""
    from rich.table import Table

    from stratum_host.cli import render
    from stratum_host.cli.main import out, settings_from

    settings = settings_from(config)
    rows = _call(settings, "GET", "/api/publishers", params={"tenant": tenant} if tenant else {})
    if as_json:
        render.print_json(out, rows["publishers"])
        return
    table = Table("name", "tenant", "public key", "created", "revoked")
    for row in rows["publishers"]:
        table.add_row(
            row["name"],
            row["tenant"],
            row["public_key"],
            row["created_at"],
            row["revoked_at"] or "",
        )
    out.print(table)


@publisher_app.command("revoke")
def revoke(name: str, config: Path | None = ConfigOption) -> None:
    """Revoke a publisher: its events are denied and nats-server refuses its connection."""
    from stratum_host.cli.main import out, settings_from

    record = _call(settings_from(config), "DELETE", f"/api/publishers/{name}")
    out.print(f"publisher {name} revoked at {record['revoked_at']}")
