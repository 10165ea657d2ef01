"""`stratum emit`: publish a CloudEvent as any publisher would, optionally wait for its run.

With the `OTEL_*` variables set (as for `stratum up`), the publish is a PRODUCER span of
its own and its `traceparent` travels with the event, so the run's trace starts here.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import typer

from stratum.config import Settings
from stratum_host.cli import render
from stratum_host.cli.main import (
    ConfigOption,
    JsonOption,
    SeedFileOption,
    api_base,
    fail,
    out,
    settings_from,
)
from stratum_host.cli.publishers import seed_for
from stratum_host.cli.signed import api_auth


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
    from stratum.bus.subjects import Subjects
    from stratum.clock import iso, utc_now
    from stratum.ids import run_id
    from stratum_host.server import read_endpoint

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
    trace_id = asyncio.run(publish(endpoint["nats"], subject, orjson.dumps(event), ident, seed))
    run = run_id(tenant, ident)
    if not wait:
        if as_json:
            emitted = {"run_id": run, "event_id": ident, "subject": subject}
            render.print_json(out, emitted | ({"trace_id": trace_id} if trace_id else {}))
        else:
            traced = f"; trace {trace_id}" if trace_id else ""
            out.print(f"emitted {ident} on {subject}; run {run}{traced}")
        return
    if as_json or not sys.stdout.isatty():
        view = wait_for(settings, run, timeout, quiet=as_json)
    else:  # a person watching: the run's timeline, redrawn as it moves
        from stratum_host.cli.live import follow_run

        view = follow_run(
            out, run, lambda show: wait_for(settings, run, timeout, quiet=True, on_view=show)
        )
    if as_json:
        render.print_json(out, view)
    else:
        out.print(render.run_detail(view))
    if view["status"] != "Succeeded":
        raise typer.Exit(2)


async def publish(url: str, subject: str, body: bytes, ident: str, seed: str | None) -> str:
    """Publish as the publisher (its NKey user, its signature) when there is a seed; the
    id of the trace the event starts ("" when tracing is off)."""
    import time

    import nats

    from stratum.telemetry import tracing
    from stratum.trust.signing import sign_event

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
    tracing.setup_from_env()
    try:
        with tracing.publishing(subject, headers, ident):
            trace_id = tracing.trace_id()
            await nc.jetstream().publish(subject, body, headers=headers)
    except Exception as error:
        denied = [r for r in refusals if "permissions violation" in r.lower()]
        reason = denied[0] if denied else f"{type(error).__name__}: {error}"
        fail(f"publishing to {subject} failed: {reason}")
    finally:
        await nc.close()
        tracing.flush()
    return trace_id


def at_rest(view: dict[str, Any]) -> bool:
    """Whether nothing moves the run until a person does something: it ended, or it is
    held."""
    return bool(view.get("finished")) or view.get("status") == "Held"


def wait_for(
    settings: Settings,
    run: str,
    timeout: float,
    *,
    quiet: bool,
    on_view: Callable[[dict[str, Any]], None] | None = None,
    until: Callable[[dict[str, Any]], bool] | None = None,
) -> dict[str, Any]:
    """Poll the run until it is at rest (`until`; by default finished, or Held for an
    operator) and every event of it is projected; `on_view` sees each view read on the
    way."""
    resting = until or at_rest
    import time

    import httpx

    base = api_base(settings)
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
                if on_view is not None:
                    on_view(view)
                if view["status"] != last_status and not quiet:
                    sys.stderr.write(f"  {run}: {view['status']}\n")
                    last_status = view["status"]
                if resting(view) and view.get("projected"):
                    return view
            time.sleep(0.05)
    fail(f"run {run} did not come to rest within {timeout:.0f}s (see `stratum show {run}`)")
