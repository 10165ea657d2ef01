"""The graph version: a content hash of everything that defines the graph."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path


class Fingerprint:
    """Collects (key, bytes) pairs and hashes them in key order.

    Keys are paths relative to a labelled root, so the same definitions checked out in
    another folder get the same version.
    """

    def __init__(self) -> None:
        self._entries: dict[str, bytes] = {}

    def add_files(self, label: str, root: Path, files: Iterable[Path]) -> None:
        for path in files:
            key = f"{label}/{path.relative_to(root).as_posix()}"
            self._entries[key] = path.read_bytes()

    def add_outside(self, path: Path) -> None:
        """A file outside every labelled root (a script referenced by `../`), by absolute path."""
        if path.is_file():
            self._entries.setdefault(f"file:{path}", path.read_bytes())

    def digest(self) -> str:
        """16 hex digits of sha256 over length-prefixed keys and contents."""
        hasher = hashlib.sha256()
        for key in sorted(self._entries):
            content = self._entries[key]
            hasher.update(f"{len(key)}:{key}{len(content)}:".encode())
            hasher.update(content)
        return hasher.hexdigest()[:16]
