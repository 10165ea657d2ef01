"""`stratum function serve NAME`: one function as a CloudEvents HTTP endpoint (Knative).

Several names (or `all`) serve those functions from one process, on one port, each under
`/<name>/`: one embedded database for all of them, as in a single container.

What Knative sets is read from the environment: `PORT` (where to listen) and `K_SINK`
(where events other than the reply go: the broker). The rest is the usual startup config
(`STRATUM_*`): the database must be one every instance reaches (`STRATUM_SURREAL_URL`
= `ws://...`), and the stage executor and compensator need `STRATUM_VAULT_ADDR`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from stratum.config import Settings

function_app = typer.Typer(
    no_args_is_help=True, help="Run one function by itself (Knative, one container each)."
)
ConfigOption = typer.Option(None, "--config", "-c", help="Nickel startup config")
NamesArgument = typer.Argument(
    ...,
    help="ingest, planner, stage-executor, compensator, projector (several: each under "
    "/<name>/), or all",
    metavar="NAME",
    show_default=False,
)


@function_app.command()
def serve(
    names: list[str] = NamesArgument,
    port: int = typer.Option(
        0, "--port", "-p", help="Port to listen on [env PORT, else 8080]", show_default=False
    ),
    host: str = typer.Option(
        "", "--host", help="Address to listen on [STRATUM_HTTP_HOST]", show_default=False
    ),
    sink: str = typer.Option(
        "", "--sink", help="Where further events go [env K_SINK]", show_default=False
    ),
    config: Path | None = ConfigOption,
) -> None:
    """Serve each NAME's CloudEvents endpoint (`POST /`, `GET /healthz`, `GET /readyz`;
    with several names, under `/<name>/`)."""
    from stratum.telemetry.logs import setup_logging
    from stratum_host.cli.main import fail, settings_from
    from stratum_host.registry import FUNCTION_NAMES

    chosen = list(FUNCTION_NAMES) if "all" in names else list(dict.fromkeys(names))
    unknown = sorted(set(chosen) - set(FUNCTION_NAMES))
    if unknown:
        fail(f"unknown function(s) {', '.join(unknown)}; one of {', '.join(FUNCTION_NAMES)}, all")
    setup_logging()
    settings = settings_from(config)
    listen_port = port or int(os.environ.get("PORT") or 8080)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(settings, chosen, host or settings.http_host, listen_port, sink or None))


async def _serve(
    settings: Settings, names: list[str], host: str, port: int, sink: str | None
) -> None:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.routing import Mount
    from starlette.types import ASGIApp

    from stratum_host.function_host import FunctionHost

    target = sink if sink is not None else os.environ.get("K_SINK", "")
    function_host = await FunctionHost.open(settings, names)
    try:
        endpoints = {name: function_host.endpoint(name, target) for name in names}
        app: ASGIApp
        if len(endpoints) == 1:
            [endpoint] = endpoints.values()
            app = endpoint.app
        else:
            app = Starlette(routes=[Mount(f"/{n}", app=e.app) for n, e in endpoints.items()])
        server = uvicorn.Server(
            uvicorn.Config(
                app,
                host=host,
                port=port,
                log_level="warning",
                lifespan="off",
                access_log=False,
            )
        )
        print(f"serving {', '.join(names)} on http://{host}:{port}", flush=True)
        await server.serve()  # until SIGINT/SIGTERM (uvicorn's own handlers)
    finally:
        await function_host.stop()


@function_app.command()
def run(
    name: str = typer.Argument(
        ..., help="ingest, planner, stage-executor, compensator or projector"
    ),
    config: Path | None = ConfigOption,
) -> None:
    """Run NAME alone on its JetStream durable consumer (`STRATUM_NATS_URL`), until
    SIGINT/SIGTERM: the plain-Deployment shape, scaled by KEDA on the consumer's lag."""
    from stratum.telemetry.logs import setup_logging
    from stratum_host.cli.main import fail, settings_from

    setup_logging()
    settings = settings_from(config)
    if not settings.nats_url:
        fail("function run needs STRATUM_NATS_URL (a NATS server with JetStream)")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_run(settings, name))


async def _run(settings: Settings, name: str) -> None:
    """One function on its durable consumer of the deployment's NATS (`nats_url`): the
    core identity makes sure the streams exist, the function consumes and publishes as
    its own NKey user when `nats_seeds` has its seed."""
    import signal

    from stratum.bus.transport import Transport
    from stratum.errors import ConfigError
    from stratum.runtime import JetStreamRunner, Publisher, ensure_streams
    from stratum_host.function_host import FunctionHost

    if not settings.nats_url:
        raise ConfigError("`stratum function run` needs the deployment's NATS: set nats_url")
    function_host = await FunctionHost.open(settings, [name])
    transport = Transport(settings, function_host.subjects, function_host.store, [name])
    runner = None
    try:
        await transport.start()
        await ensure_streams(
            transport.core.jetstream(), function_host.subjects, settings.duplicate_window
        )
        connection = await transport.connection_as(name)
        js = connection.jetstream()
        publisher = Publisher(js, function_host.subjects)
        [function] = function_host.functions(publisher)
        prefix = settings.subject_prefix.replace(".", "-")
        runner = JetStreamRunner(
            function,
            js,
            publisher,
            function_host.store,
            durable_prefix=prefix,
            connection=connection,
        )
        await runner.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
    finally:
        if runner is not None:
            await runner.stop()
        await transport.stop()
        await function_host.stop()
