"""Secret scan of the files about to be published (detect-secrets, its default plugins).

A finding names the file, the line and the detector's type, never the value.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from pydantic import BaseModel, ConfigDict


class SecretFinding(BaseModel):
    model_config = ConfigDict(frozen=True)

    file: Path
    line: int
    kinds: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: possible secret ({', '.join(self.kinds)})"


def scan_files(files: Iterable[Path]) -> list[SecretFinding]:
    """Every line of `files` some detector flags, sorted by file and line."""
    # ~0.5 s to import its plugins: only `stratum publish` pays it
    from detect_secrets.core.secrets_collection import SecretsCollection
    from detect_secrets.settings import default_settings

    collection = SecretsCollection()
    with default_settings():
        for file in files:
            collection.scan_file(str(file))
    kinds: dict[tuple[str, int], set[str]] = {}
    for filename, secret in collection:
        kinds.setdefault((filename, secret.line_number), set()).add(secret.type)
    return [
        SecretFinding(file=Path(filename), line=line, kinds=tuple(sorted(found)))
        for (filename, line), found in sorted(kinds.items())
    ]
