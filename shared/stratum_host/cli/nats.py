"""`stratum nats config --out DIR`: the files a deployment's own nats-server needs.

Writes `DIR/seeds/<identity>.seed` (one NKey user per function and one for Stratum's
core connection; kept when already there, so running it again changes no user) and
`DIR/nats-server.conf` (listen address, JetStream store, every user with Stratum's
permissions). Compose and Kubernetes run nats-server with that file; Stratum's processes
connect with `STRATUM_NATS_URL` and `STRATUM_NATS_SEEDS=DIR/seeds`. Seeds are never
printed.
"""

from __future__ import annotations

from pathlib import Path

import typer

nats_app = typer.Typer(no_args_is_help=True, help="A deployment's own nats-server.")
ConfigOption = typer.Option(None, "--config", "-c", help="Nickel startup config")
OutOption = typer.Option(..., "--out", "-o", help="Folder to write seeds/ and the config")


@nats_app.command("config")
def config_command(
    out: Path = OutOption,
    listen: str = typer.Option(
        "127.0.0.1:4222", "--listen", help="HOST:PORT the nats-server listens on"
    ),
    store_dir: str = typer.Option(
        "/data/jetstream", "--store-dir", help="JetStream store, as the server sees it"
    ),
    config: Path | None = ConfigOption,
) -> None:
    """Write NKey seeds and a whole nats-server config (users, permissions, JetStream)
    for the configured subject prefix; existing seeds are kept."""
    from stratum.bus.deployment import SEEDS, write_deployment
    from stratum.bus.subjects import Subjects
    from stratum_host.cli.main import out as console
    from stratum_host.cli.main import settings_from
    from stratum_host.registry import placed

    settings = settings_from(config)
    subjects = Subjects(settings.subject_prefix)
    functions = placed(settings, subjects)
    path = write_deployment(out, functions, subjects, listen=listen, store_dir=store_dir)
    seeds = out / SEEDS
    names = sorted(seed.stem for seed in seeds.glob("*.seed"))
    console.print(f"nats-server config: {path} (listen {listen}, JetStream in {store_dir})")
    console.print(f"seeds ({', '.join(names)}): {seeds}/ (mode 0600; keep them secret)")
    console.print(
        "Stratum connects with STRATUM_NATS_URL=nats://<that address> and "
        "STRATUM_NATS_SEEDS=<where that seeds folder is mounted>"
    )
