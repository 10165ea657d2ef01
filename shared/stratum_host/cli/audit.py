"""`stratum audit export --ndjson` and `stratum audit verify FILE`.

`export` writes the bytes the API sends (`GET /api/audit`: the server computes the chain)
and checks the chain as they arrive, so a file it leaves behind always verifies; it
prints the chain's head hash on stderr: keep it, and `verify --head` also detects a file
cut short or rewritten whole. `verify` needs no running Stratum.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import typer

from stratum.trust.audit_chain import ChainReport, ChainVerifier, verify_lines

audit_app = typer.Typer(no_args_is_help=True, help="The audit trail: export it, verify an export.")
ConfigOption = typer.Option(None, "--config", "-c", help="Nickel startup config")
OutOption = typer.Option(None, "--out", "-o", help="Write here (default: standard output).")


@audit_app.command()
def export(
    ndjson: bool = typer.Option(
        False, "--ndjson", help="One hash-chained JSON record a line (the format there is)."
    ),
    tenant: str = typer.Option("", "--tenant", "-t", help="Only this tenant's runs."),
    since: str = typer.Option("", "--since", help="Only runs created at or after (ISO 8601)."),
    out_file: Path | None = OutOption,
    config: Path | None = ConfigOption,
) -> None:
    """Every run's audit record, oldest first, each line hash-chained to the one before."""
    import httpx

    from stratum_host.cli.main import fail, settings_from
    from stratum_host.cli.signed import api_auth
    from stratum_host.server import read_endpoint

    if not ndjson:
        fail("say --ndjson: the audit trail is exported as hash-chained NDJSON")
    settings = settings_from(config)
    base = read_endpoint(settings.data_dir)["http"]
    params = {key: value for key, value in (("tenant", tenant), ("since", since)) if value}
    partial = out_file.with_name(out_file.name + ".part") if out_file else None
    try:
        with httpx.stream(
            "GET", base + "/api/audit", params=params, timeout=120, auth=api_auth(settings)
        ) as response:
            if response.status_code >= 400:
                response.read()
                fail(response.json().get("error", f"HTTP {response.status_code}"))
            with contextlib.ExitStack() as stack:
                sink = stack.enter_context(partial.open("wb")) if partial else sys.stdout.buffer
                report = _copy_checked(_lines(response.iter_bytes()), sink)
                sink.flush()
    except httpx.HTTPError as error:
        _discard(partial)
        fail(f"exporting from {base} failed ({type(error).__name__}: {error})")
    if not report.ok:
        _discard(partial)
        fail(f"the export broke its chain at line {report.bad_line}: {report.reason}")
    if out_file and partial:
        partial.replace(out_file)
    where = f" to {out_file}" if out_file else ""
    sys.stderr.write(f"exported {report.lines} record(s){where}; head {report.head}\n")


@audit_app.command()
def verify(
    file: Path,
    head: str = typer.Option("", "--head", help="The head hash the export reported."),
) -> None:
    """Check an export's hash chain (offline); exit 1 naming the first bad line."""
    from stratum_host.cli.main import fail, out

    try:
        with file.open("rb") as lines:
            report = verify_lines(lines)
    except OSError as error:
        fail(f"cannot read {file}: {error.strerror or error}")
    if not report.ok:
        fail(f"{file}: line {report.bad_line}: {report.reason}")
    if head and report.head != head:
        fail(
            f"{file}: the chain holds but ends at {report.head} after {report.lines} line(s), "
            f"not at {head}: lines were cut off its end or it was rewritten"
        )
    out.print(f"ok: {file}: {report.lines} record(s), head {report.head}")


def _copy_checked(lines: Iterator[bytes], sink: BinaryIO) -> ChainReport:
    verifier = ChainVerifier()
    for line in lines:
        if not verifier.feed(line):
            break
        sink.write(line + b"\n")
    return verifier.report()


def _lines(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Whole lines (without their newline) from a stream of chunks."""
    rest = b""
    for chunk in chunks:
        rest += chunk
        *complete, rest = rest.split(b"\n")
        yield from complete
    if rest:
        yield rest


def _discard(path: Path | None) -> None:
    if path is not None:
        path.unlink(missing_ok=True)
