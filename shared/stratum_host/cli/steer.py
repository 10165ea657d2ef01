"""`stratum cancel`: ask Stratum to stop a run (Cedar decides whether the caller may).

Exit codes: 0 asked (with `--wait`: the run ended Cancelled), 2 with `--wait` when it
ended otherwise (CompensationFailed: something could not be undone), 3 the run has ended
or is already being stopped, 4 the policies refused, 5 no such run, 1 anything else.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from stratum_host.cli import render
from stratum_host.cli.emit import wait_for
from stratum_host.cli.main import ConfigOption, JsonOption, api_get, out, settings_from


def cancel(
    run_id: str = typer.Argument(..., help="The run to stop"),
    reason: str = typer.Option("", "--reason", "-r", help="Why (kept in the run's audit)"),
    wait: bool = typer.Option(False, "--wait", help="Wait until the run has ended"),
    timeout: float = typer.Option(120.0, "--timeout", help="Seconds --wait waits"),
    as_json: bool = JsonOption,
    config: Path | None = ConfigOption,
) -> None:
    """Cancel a run: nothing more is dispatched, its running scripts are killed, what it
    did is undone in reverse (its compensate scripts), and it ends Cancelled. A queued
    run ends Cancelled at once, having run nothing."""
    settings = settings_from(config)
    asked = api_get(settings, f"/api/runs/{run_id}/cancel", method="POST", body={"reason": reason})
    if not wait:
        if as_json:
            render.print_json(out, asked)
        else:
            policies = ", ".join(asked.get("policy_ids") or []) or "no policy"
            out.print(
                f"cancel of {run_id} asked by {asked['actor']} (allowed by {policies}); "
                f"it was {asked['was']}"
            )
        return
    view = wait_for(settings, run_id, timeout, quiet=as_json or not sys.stderr.isatty())
    if as_json:
        render.print_json(out, view)
    else:
        out.print(render.run_detail(view, outputs=False))  # undone: `stratum show` has them
    if view["status"] != "Cancelled":
        raise typer.Exit(2)
