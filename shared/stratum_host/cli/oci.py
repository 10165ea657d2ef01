"""`stratum publish REF`: the definitions folder as a verified OCI artifact.

Typecheck, secret scan, export, sha256 per layer, push (`stratum.oci.publish`). Every
problem found is printed (file:line, never a secret's value) and nothing is pushed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from stratum.errors import ArtifactError, DefinitionError
from stratum_host.cli import render
from stratum_host.cli.main import fail, out, settings_from

# its own options (as publishers.py): typed here, whatever order mypy reads the cycle in
ConfigOption = typer.Option(None, "--config", "-c", help="Nickel startup config")
JsonOption = typer.Option(False, "--json", help="Machine-readable JSON output.")
DefinitionsOption = typer.Option(
    None, "--definitions", "-d", help="Folder to publish (default: the configured definitions)"
)


def publish(
    ref: str = typer.Argument(..., help="oci://HOST[:PORT]/REPOSITORY[:TAG]"),
    definitions: Path | None = DefinitionsOption,
    as_json: bool = JsonOption,
    config: Path | None = ConfigOption,
) -> None:
    """Typecheck, secret-scan and push the workflow definitions to an OCI registry
    (plain HTTP for a loopback registry); every file's sha256 rides along as an
    annotation that `stratum up --definitions oci://...` verifies before loading."""
    from stratum.oci import parse_ref
    from stratum.oci import publish as push

    settings = settings_from(config)
    folder = definitions or settings.definitions
    try:
        published = push(parse_ref(ref), folder, settings.lib_dir)
    except (ArtifactError, DefinitionError) as error:
        *lines, last = str(error).splitlines()
        for line in lines:
            sys.stderr.write(f"{line}\n")
        fail(last if lines else str(error))
    if as_json:
        render.print_json(out, published.model_dump(mode="json"))
        return
    out.print(
        f"published {folder} as {published.ref} ({len(published.files)} files, "
        f"graph {published.version})\ndigest {published.digest}"
    )
