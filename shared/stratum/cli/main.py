"""`stratum`: up, emit, runs, show, plan, check, replay, dead-letters, redrive, publisher,
audit.

Errors print one line on stderr and exit non-zero. Commands that read runs talk to the
running `stratum up` over its HTTP API (the embedded database belongs to that process);
`plan` and `check` work on the definitions directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import uuid
from pathlib import Path
from typing import Any, NoReturn

import orjson
import typer
from rich.console import Console

from stratum.cli import render
from stratum.cli.signed import api_auth
from stratum.config import Settings, load_settings
from stratum.errors import DefinitionError, StratumError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Stratum: event-driven pipelines of Nushell steps declared in Nickel.",
)
# piped output is never cut to 80 columns: a run id must survive `stratum runs | grep`
out = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
DEFAULT_CONFIG = Path("nickel/config.ncl")
ConfigOption = typer.Option(
    None, "--config", "-c", help="Nickel startup config [nickel/config.ncl]"
)
JsonOption = typer.Option(False, "--json", help="Machine-readable JSON output.")
SeedFileOption = typer.Option(
    None, "--seed-file", help="Publisher seed to sign with [<data_dir>/publishers/T.seed]"
)


def fail(message: str, code: int = 1) -> NoReturn:
    sys.stderr.write(f"error: {message}\n")
    raise typer.Exit(code)


def settings_from(config: Path | None) -> Settings:
    if config is None and DEFAULT_CONFIG.is_file():
        config = DEFAULT_CONFIG
    return load_settings(config)


def api_get(
    settings: Settings, path: str, params: dict[str, Any] | None = None, *, method: str = "GET"
) -> Any:
    import httpx

    from stratum.server import read_endpoint

    base = read_endpoint(settings.data_dir)["http"]
    try:
        response = httpx.request(
            method, base + path, params=params, timeout=120, auth=api_auth(settings)
        )
    except httpx.HTTPError as error:
        fail(
            f"Stratum is not reachable at {base} ({type(error).__name__}); is `stratum up` running?"
        )
    body = response.json()
    if response.status_code >= 400:
        fail(body.get("error", f"HTTP {response.status_code}"))
    return body


@app.command()
def up(config: Path | None = ConfigOption) -> None:
    """Start Stratum (NATS, SurrealDB, the five functions, HTTP API) until Ctrl-C."""
    from stratum.logs import setup_logging

    setup_logging()
    settings = settings_from(config)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(settings))


async def _serve(settings: Settings) -> None:
    import signal

    from stratum.server import StratumServer

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


@app.command()
def emit(
    topic: str = typer.Argument(..., help="Event topic, e.g. crate.push"),
    tenant: str = typer.Option(..., "--tenant", "-t"),
    data: str = typer.Option("{}", "--data", "-d", help="Event data as JSON"),
    event_id: str = typer.Option("", "--id", help="CloudEvent id [random]"),
    source: str = typer.Option("stratum-cli", "--source"),
    wait: bool = typer.Option(False, "--wait", help="Wait for the run to finish and print it"),
    timeout: float = typer.Option(120.0, "--timeout", help="Seconds --wait waits"),
    seed_file: Path | None = SeedFileOption,
    as_json: bool = JsonOption,
    config: Path | None = ConfigOption,
) -> None:
    """Publish a CloudEvent to the tenant's event subject, as any NATS client could,
    signed with the tenant's publisher seed when there is one."""
    from stratum.clock import iso, utc_now
    from stratum.ids import run_id
    from stratum.server import read_endpoint
    from stratum.subjects import Subjects

    settings = settings_from(config)
    try:
        payload = orjson.loads(data)
    except orjson.JSONDecodeError as error:
        fail(f"--data is not JSON: {error}")
    endpoint = read_endpoint(settings.data_dir)
    subjects = Subjects(endpoint.get("subject_prefix", settings.subject_prefix))
    ident = event_id or str(uuid.uuid4())
    event = {
        "specversion": "1.0",
        "id": ident,
        "source": source,
        "type": topic,
        "time": iso(utc_now()),
        "datacontenttype": "application/json",
        "data": payload,
    }
    try:
        subject = subjects.event(tenant, topic)
        subjects.split_event_subject(subject)
    except ValueError as error:
        fail(str(error))
    seed = seed_for(settings, tenant, seed_file)
    asyncio.run(_publish(endpoint["nats"], subject, orjson.dumps(event), ident, seed))
    run = run_id(tenant, ident)
    if not wait:
        if as_json:
            render.print_json(out, {"run_id": run, "event_id": ident, "subject": subject})
        else:
            out.print(f"emitted {ident} on {subject}; run {run}")
        return
    view = _wait_for(settings, run, timeout, quiet=as_json)
    if as_json:
        render.print_json(out, view)
    else:
        out.print(render.run_tree(view))
    if view["status"] != "Succeeded":
        raise typer.Exit(2)


async def _publish(url: str, subject: str, body: bytes, ident: str, seed: str | None) -> None:
    """Publish as the publisher (its NKey user, its signature) when there is a seed."""
    import time

    import nats

    from stratum.signing import sign_event

    credentials = {"nkeys_seed_str": seed} if seed else {}
    headers = {"Nats-Msg-Id": ident}
    if seed:
        headers |= sign_event(seed, subject, body, int(time.time() * 1000))

    refusals: list[str] = []

    async def quiet(error: Exception) -> None:
        refusals.append(str(error))  # reported below, in one line

    try:
        nc = await nats.connect(
            url,
            connect_timeout=3,
            max_reconnect_attempts=0,
            allow_reconnect=False,
            error_cb=quiet,
            **credentials,
        )
    except Exception as error:
        hint = "" if seed else " (no publisher seed: see `stratum publisher add --help`)"
        fail(f"NATS at {url} refused or is not reachable: {error}{hint}")
    try:
        await nc.jetstream().publish(subject, body, headers=headers)
    except Exception as error:
        denied = [r for r in refusals if "permissions violation" in r.lower()]
        reason = denied[0] if denied else f"{type(error).__name__}: {error}"
        fail(f"publishing to {subject} failed: {reason}")
    finally:
        await nc.close()


def _wait_for(settings: Settings, run: str, timeout: float, *, quiet: bool) -> dict[str, Any]:
    import time

    import httpx

    from stratum.server import read_endpoint

    base = read_endpoint(settings.data_dir)["http"]
    deadline = time.monotonic() + timeout
    last_status = ""
    with httpx.Client(base_url=base, timeout=10, auth=api_auth(settings)) as client:
        while time.monotonic() < deadline:
            try:
                response = client.get(f"/api/runs/{run}")
            except httpx.HTTPError as error:
                fail(f"lost Stratum at {base} while waiting for {run} ({type(error).__name__})")
            if response.status_code == 200:
                view: dict[str, Any] = response.json()
                if view["status"] != last_status and not quiet:
                    sys.stderr.write(f"  {run}: {view['status']}\n")
                    last_status = view["status"]
                if view.get("finished") and view.get("projected"):
                    return view
            time.sleep(0.05)
    fail(f"run {run} did not finish within {timeout:.0f}s (see `stratum show {run}`)")


@app.command()
def runs(
    tenant: str = typer.Option("", "--tenant", "-t"),
    limit: int = typer.Option(50, "--limit", "-n"),
    as_json: bool = JsonOption,
    config: Path | None = ConfigOption,
) -> None:
    """List recent runs, newest first."""
    body = api_get(settings_from(config), "/api/runs", {"tenant": tenant, "limit": limit})
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
        out.print(render.run_tree(view))


@app.command()
def plan(topic: str, as_json: bool = JsonOption, config: Path | None = ConfigOption) -> None:
    """The stages an event on TOPIC would run, from the definitions on disk."""
    from stratum.graph import load_graph
    from stratum.graph import plan as make_plan

    settings = settings_from(config)
    chosen = make_plan(load_graph(settings.definitions, settings.lib_dir), topic)
    stages = [list(stage) for stage in chosen.stages]
    if as_json:
        render.print_json(out, {"stages": stages})
    else:
        out.print(render.plan_text(topic, stages))


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
    """Messages a function gave up on (invalid, or failed every delivery), newest first."""
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
    problems = check_definitions(settings.definitions, settings.lib_dir)
    policy_problems = check_policies(settings.policies)
    for problem in [*problems, *policy_problems]:
        sys.stderr.write(f"{problem}\n")
    counts = ((problems, settings.definitions), (policy_problems, settings.policies))
    where = [f"{len(found)} problem(s) in {folder}" for found, folder in counts if found]
    if where:
        fail(", ".join(where))
    out.print(f"ok: {settings.definitions}, {settings.lib_dir} and {settings.policies} check clean")


from stratum.cli.publishers import publisher_app, seed_for  # noqa: E402  (needs `app` above)

app.add_typer(publisher_app, name="publisher")

from stratum.cli.audit import audit_app  # noqa: E402  (beside the others' sub-commands)

app.add_typer(audit_app, name="audit")


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
