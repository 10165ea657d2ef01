"""`stratum cancel`, `stratum resume`, `stratum rerun`: ask Stratum to stop a run, to run
a held one again from the stage it failed in, or to start a new run of its trigger event
(Cedar decides whether the caller may).

Exit codes: 0 asked (with `--wait`: the run ended Cancelled; resumed, it Succeeded), 2
with `--wait` when it came to rest otherwise (CompensationFailed: something could not be
undone; resumed, it failed or was held again), 3 the run has ended or is already being
stopped (cancel) or is not held (resume), 4 the policies refused (the request, or a
rerun's trigger), 5 no such run, 1 anything else.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from stratum_host.cli import render
from stratum_host.cli.emit import at_rest, wait_for
from stratum_host.cli.main import ConfigOption, JsonOption, api_get, fail, out, settings_from


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
    steer("cancel", run_id, reason, wait, timeout, as_json, config)


def resume(
    run_id: str = typer.Argument(..., help="The held run to run again"),
    reason: str = typer.Option("", "--reason", "-r", help="Why (kept in the run's audit)"),
    wait: bool = typer.Option(False, "--wait", help="Wait until the run ends or is held again"),
    timeout: float = typer.Option(120.0, "--timeout", help="Seconds --wait waits"),
    as_json: bool = JsonOption,
    config: Path | None = ConfigOption,
) -> None:
    """Resume a held run: planned anew with the definitions as they are now, it runs again
    from the stage that failed (new attempts of the nodes that did not succeed; those that
    did never run again), in the same run and trace."""
    steer("resume", run_id, reason, wait, timeout, as_json, config)


def ended(view: dict[str, Any]) -> bool:
    return bool(view.get("finished"))


def outcome_of(view: dict[str, Any], request: str) -> str:
    """How the planner applied `request`, as the run keeps it ("" until it has)."""
    for entry in view.get("interventions") or []:
        if entry.get("request") == request:
            return str(entry.get("outcome") or "")
    return ""


def resumed_past(resumption: int, request: str) -> Callable[[dict[str, Any]], bool]:
    """At rest in a resumption after `resumption` (the resume took, and the run ended or
    was held again), or the resume was ignored (the run stays as it was)."""

    def settled(view: dict[str, Any]) -> bool:
        if outcome_of(view, request).startswith("ignored"):
            return True
        return int(view.get("resumption") or 0) > resumption and at_rest(view)

    return settled


def rerun(
    run_id: str = typer.Argument(..., help="The run whose trigger event to run again"),
    reason: str = typer.Option("", "--reason", "-r", help="Why (kept in both runs' audit)"),
    wait: bool = typer.Option(False, "--wait", help="Wait until the new run ends or is held"),
    timeout: float = typer.Option(120.0, "--timeout", help="Seconds --wait waits"),
    as_json: bool = JsonOption,
    config: Path | None = ConfigOption,
) -> None:
    """Rerun a run: a new run (new id, its own trace) of the same trigger event, whose
    trigger the policies decide again, as for the publisher that sent it. The two runs
    name each other (`stratum show`, the audit trail). Exits 4 if the new run is Denied."""
    settings = settings_from(config)
    asked = api_get(settings, f"/api/runs/{run_id}/rerun", method="POST", body={"reason": reason})
    new = str(asked["run_id"])
    if asked["status"] == "Denied":
        if as_json:
            render.print_json(out, asked)
        fail(f"the rerun {new} of {run_id} was denied: {asked['reason']}", 4)
    if not wait:
        answered(
            asked,
            as_json,
            f"rerun of {run_id} as {new}, asked by {asked['actor']} (allowed by "
            f"{allowed_by(asked)}); its trigger allowed by "
            f"{', '.join(asked['trigger_policy_ids'])}",
        )
        return
    view = wait_for(settings, new, timeout, quiet=as_json or not sys.stderr.isatty())
    rested(view, as_json, "Succeeded")


# where a run should come to rest after each request (anything else: exit 2)
HOPED_FOR = {"cancel": "Cancelled", "resume": "Succeeded"}


def steer(
    action: str,
    run_id: str,
    reason: str,
    wait: bool,
    timeout: float,
    as_json: bool,
    config: Path | None,
) -> None:
    settings = settings_from(config)
    asked = api_get(
        settings, f"/api/runs/{run_id}/{action}", method="POST", body={"reason": reason}
    )
    if not wait:
        answered(
            asked,
            as_json,
            f"{action} of {run_id} asked by {asked['actor']} (allowed by {allowed_by(asked)}); "
            f"it was {asked['was']}",
        )
        return
    view = wait_for(
        settings,
        run_id,
        timeout,
        quiet=as_json or not sys.stderr.isatty(),
        until=resumed_past(int(asked.get("resumption") or 0), str(asked["request"]))
        if action == "resume"
        else ended,
    )
    ignored = outcome_of(view, str(asked["request"]))
    if ignored.startswith("ignored"):
        fail(f"the {action} of {run_id} was {ignored}", 3)
    # a cancelled run's outputs are undone: `stratum show` still has them
    rested(view, as_json, HOPED_FOR[action], outputs=action != "cancel")


def allowed_by(asked: dict[str, Any]) -> str:
    return ", ".join(asked.get("policy_ids") or []) or "no policy"


def answered(asked: dict[str, Any], as_json: bool, line: str) -> None:
    """The API's answer to a request: as JSON, or the one line a person reads."""
    if as_json:
        render.print_json(out, asked)
    else:
        out.print(line)


def rested(view: dict[str, Any], as_json: bool, hoped: str, *, outputs: bool = True) -> None:
    """The run where it came to rest; exit 2 unless that is where the request hoped."""
    if as_json:
        render.print_json(out, view)
    else:
        out.print(render.run_detail(view, outputs=outputs))
    if view["status"] != hoped:
        raise typer.Exit(2)
