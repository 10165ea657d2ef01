"""`stratum`: up, emit, publish, runs, show, cancel, resume, rerun, top, plan, check, replay,
dead-letters, redrive, publisher, audit.

Errors print one line on stderr and exit non-zero. Commands that read runs talk to the
running `stratum up` over its HTTP API (the embedded database belongs to that process);
`plan` and `check` work on the definitions directly (`plan --live` asks the API).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import typer
from rich.console import Console

from stratum.config import Settings, load_settings
from stratum.errors import DefinitionError, StratumError
from stratum_host.cli import render
from stratum_host.cli.signed import api_auth

if TYPE_CHECKING:
    import httpx

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Stratum: event-driven pipelines of Nushell steps declared in Nickel.",
)
# piped output is never cut to 80 columns: a run id must survive `stratum runs | grep`
out = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
DEFAULT_CONFIG = Path("nickel/config.ncl")
# how an unsigned CLI names itself to the API (`Stratum::Source`, as `stratum emit` does)
CLI_CALLER = "stratum-cli"
ConfigOption: Any = typer.Option(  # typed: cli/steer.py reads it while main imports
    None, "--config", "-c", help="Nickel startup config [nickel/config.ncl]"
)
JsonOption: Any = typer.Option(False, "--json", help="Machine-readable JSON output.")
SeedFileOption = typer.Option(
    None, "--seed-file", help="Publisher seed to sign with [<data_dir>/publishers/T.seed]"
)


def fail(message: str, code: int = 1) -> NoReturn:
    sys.stderr.write(f"error: {message}\n")
    raise typer.Exit(code)


def settings_from(config: Path | None, **overrides: Any) -> Settings:
    """The settings of `config` (default nickel/config.ncl), env, then the non-None
    `overrides` (command-line options)."""
    if config is None and DEFAULT_CONFIG.is_file():
        config = DEFAULT_CONFIG
    chosen = {key: value for key, value in overrides.items() if value is not None}
    return load_settings(config, overrides=chosen)


def api_base(settings: Settings) -> str:
    from stratum_host.server import read_endpoint

    base: str = read_endpoint(settings.data_dir)["http"]
    return base


def _call(
    settings: Settings,
    path: str,
    params: dict[str, Any] | None = None,
    *,
    method: str = "GET",
    body: Any = None,
) -> httpx.Response:
    import httpx

    base = api_base(settings)
    auth = api_auth(settings)
    try:
        return httpx.request(
            method,
            base + path,
            params=params,
            json=body,
            timeout=120,
            auth=auth,
            # unsigned (a Stratum that does not require signatures): who asks is a claim
            headers={} if auth else {"Stratum-Caller": CLI_CALLER},
        )
    except httpx.HTTPError as error:
        fail(
            f"Stratum is not reachable at {base} ({type(error).__name__}); is `stratum up` running?"
        )


# how a refused request exits (anything else the API refuses: 1), so scripts can tell
EXIT_CODES = {409: 3, 403: 4, 404: 5}


def api_get(
    settings: Settings,
    path: str,
    params: dict[str, Any] | None = None,
    *,
    method: str = "GET",
    body: Any = None,
) -> Any:
    response = _call(settings, path, params, method=method, body=body)
    answer = response.json()
    if response.status_code >= 400:
        fail(
            answer.get("error", f"HTTP {response.status_code}"),
            EXIT_CODES.get(response.status_code, 1),
        )
    return answer


def api_text(settings: Settings, path: str) -> str:
    """A plain-text resource of the API, such as the Prometheus `/metrics`."""
    response = _call(settings, path)
    if response.status_code >= 400:
        fail(f"{api_base(settings)}{path} answered HTTP {response.status_code}")
    return response.text


@app.command()
def up(
    config: Path | None = ConfigOption,
    definitions: str | None = typer.Option(
        None,
        "--definitions",
        help="Definitions folder, or an artifact oci://HOST:PORT/REPO:TAG (pulled, verified, "
        "followed); default: the configured definitions",
    ),
) -> None:
    """Start Stratum (NATS, SurrealDB, the five functions, HTTP API) until Ctrl-C."""
    from stratum.telemetry.logs import setup_logging

    setup_logging()
    settings = settings_from(config, definitions=definitions)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(settings))


async def _serve(settings: Settings) -> None:
    import signal

    from stratum_host.server import StratumServer

    server = StratumServer(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    starting = asyncio.create_task(server.start())
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if not starting.done():  # Ctrl-C / SIGTERM while starting: stop what has started
        starting.cancel()
        with contextlib.suppress(asyncio.CancelledError, StratumError):
            await starting
        await server.stop()
        return
    stopping.cancel()
    error = starting.exception()
    if error is not None:
        await server.stop()
        if isinstance(error, StratumError):
            raise error
        fail(f"start-up failed: {type(error).__name__}: {error}")
    graph = server.graphs.current
    out.print(f"[bold green]Stratum is up[/]  http {server.http_url}  nats {server.nats_url}")
    if graph is not None:
        out.print(
            f"graph {graph.version}: {len(graph.nodes)} nodes ({', '.join(sorted(graph.nodes))})"
        )
    else:
        out.print(f"[red]no valid graph:[/] {server.graphs.error}")
    out.print(
        f"data in {settings.data_dir}; try: stratum emit crate.push --tenant acme "
        '--data \'{"source": "nickel/examples/sample-crate"}\' --wait'
    )
    await stop.wait()
    out.print("stopping: draining consumers ...")
    await server.stop()
    out.print("stopped")


from stratum_host.cli.emit import emit  # noqa: E402  (needs the options above; listed after `up`)

app.command()(emit)
from stratum_host.cli.oci import publish  # noqa: E402  (as emit: needs the options above)

app.command()(publish)


@app.command()
def runs(
    tenant: str = typer.Option("", "--tenant", "-t"),
    status: str = typer.Option(
        "", "--status", "-s", help="Only runs in this status (running, cancelled, ...)."
    ),
    limit: int = typer.Option(50, "--limit", "-n"),
    as_json: bool = JsonOption,
    config: Path | None = ConfigOption,
) -> None:
    """List recent runs, newest first."""
    params = {"tenant": tenant, "limit": limit} | ({"status": status} if status else {})
    body = api_get(settings_from(config), "/api/runs", params)
    if as_json:
        render.print_json(out, body["runs"])
    else:
        out.print(render.runs_table(body["runs"]))


@app.command()
def show(
    run_id: str,
    tenant: str = typer.Option("", "--tenant", "-t", help="Only if the run is this tenant's."),
    as_json: bool = JsonOption,
    config: Path | None = ConfigOption,
) -> None:
    """A run's stages, nodes, statuses, durations and compensation trace."""
    params = {"tenant": tenant} if tenant else None
    view = api_get(settings_from(config), f"/api/runs/{run_id}", params)
    if as_json:
        render.print_json(out, view)
    else:
        out.print(render.run_detail(view))


from stratum_host.cli.steer import cancel, rerun, resume  # noqa: E402  (needs the helpers above)

app.command()(cancel)
app.command()(resume)
app.command()(rerun)


@app.command()
def top(
    once: bool = typer.Option(False, "--once", help="Print one snapshot and exit."),
    interval: float = typer.Option(2.0, "--interval", "-i", min=0.1, help="Seconds per refresh"),
    as_json: bool = typer.Option(False, "--json", help="One snapshot as JSON (implies --once)."),
    config: Path | None = ConfigOption,
) -> None:
    """Runs per status and each function's queue, live, from Stratum's /metrics; what
    /healthz says is degraded (a definitions or policies reload error), above them."""
    import time

    from stratum_host.cli.top import Snapshot, parse, top_view, with_health

    settings = settings_from(config)

    def read() -> Snapshot:
        return with_health(parse(api_text(settings, "/metrics")), api_get(settings, "/healthz"))

    if as_json:
        render.print_json(out, read().model_dump(mode="json"))
    elif once:
        out.print(top_view(read(), api_base(settings)))
    elif sys.stdout.isatty():
        from stratum_host.cli.live import watch_top

        watch_top(out, read, interval, api_base(settings))
    else:  # piped: a snapshot per interval, one after another (like `top -b`)
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                out.print(top_view(read(), api_base(settings)))
                time.sleep(interval)


def definitions_of(settings: Settings) -> Path:
    """The definitions folder to read: the configured one, or — for `oci://` — the
    artifact pulled and verified into the cache (its own folder, not the whole cache)."""
    if not settings.definitions_ref:
        return settings.definitions
    from stratum.oci import RegistryDefinitions

    return RegistryDefinitions(settings.definitions_ref, settings.definitions).pull().folder


from stratum_host.cli.plan import HELP as PLAN_HELP  # noqa: E402  (beside its neighbours)
from stratum_host.cli.plan import plan  # noqa: E402

app.command(help=PLAN_HELP)(plan)


@app.command()
def replay(config: Path | None = ConfigOption) -> None:
    """Rebuild the read models (run list, details, history) from the stored events."""
    body = api_get(settings_from(config), "/api/replay", method="POST")
    out.print(f"rebuilt the read models of {body['runs']} run(s) from the event log")


@app.command("dead-letters")
def dead_letters(
    limit: int = typer.Option(50, "--limit", "-n"),
    as_json: bool = JsonOption,
    config: Path | None = ConfigOption,
) -> None:
    """Messages a function gave up on (invalid, a permanent error, or failed every
    delivery), newest first."""
    body = api_get(settings_from(config), "/api/dead-letters", {"limit": limit})
    if as_json:
        render.print_json(out, body["dead_letters"])
    else:
        out.print(render.dead_letters_table(body["dead_letters"]))


@app.command()
def redrive(letter_id: str, as_json: bool = JsonOption, config: Path | None = ConfigOption) -> None:
    """Publish a dead letter again on its original subject, as it first arrived."""
    letter = api_get(settings_from(config), f"/api/dead-letters/{letter_id}/redrive", method="POST")
    if as_json:
        render.print_json(out, letter)
    else:
        out.print(
            f"re-drove {letter['id']} to {letter['subject']} "
            f"(re-driven {letter['redriven']} time(s))"
        )


@app.command()
def check(config: Path | None = ConfigOption) -> None:
    """Typecheck every Nickel file (config and workflows) and validate the Cedar policies
    against their schema; print each problem located."""
    from stratum.authz import check_policies
    from stratum.graph import check_definitions

    settings = settings_from(config)
    definitions = definitions_of(settings)
    problems = check_definitions(definitions, settings.lib_dir)
    policy_problems = check_policies(settings.policies)
    for problem in [*problems, *policy_problems]:
        sys.stderr.write(f"{problem}\n")
    counts = ((problems, definitions), (policy_problems, settings.policies))
    where = [f"{len(found)} problem(s) in {folder}" for found, folder in counts if found]
    if where:
        fail(", ".join(where))
    shown = settings.definitions_ref or definitions
    out.print(f"ok: {shown}, {settings.lib_dir} and {settings.policies} check clean")


from stratum_host.cli.publishers import publisher_app  # noqa: E402  (needs `app` above)

app.add_typer(publisher_app, name="publisher")

from stratum_host.cli.audit import audit_app  # noqa: E402  (beside the others' sub-commands)

app.add_typer(audit_app, name="audit")
from stratum_host.cli.functions import function_app  # noqa: E402

app.add_typer(function_app, name="function")
from stratum_host.cli.nats import nats_app  # noqa: E402

app.add_typer(nats_app, name="nats")


def main() -> None:
    """Entry point: deliberate errors become one line on stderr."""
    try:
        app()
    except StratumError as error:
        lines = str(error).splitlines() or [type(error).__name__]
        hint = (
            " (`stratum check` shows every problem)" if isinstance(error, DefinitionError) else ""
        )
        sys.stderr.write(f"error: {lines[0]}{hint if len(lines) > 1 else ''}\n")
        sys.exit(1)


if __name__ == "__main__":
    main()
