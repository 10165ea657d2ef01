"""Capturing a script's output with bounded memory, whatever it prints.

A script may print gigabytes (a stray `cat`). Each stream is drained as it arrives (a full
pipe would block the script until its timeout), hashed whole, written masked to its log
file up to `LOG_LIMIT`, and only a bounded part is kept in memory: the head of stdout (to
parse, up to `STDOUT_LIMIT`) and the tail of stderr (for the error summary, `STDERR_TAIL`).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ._text import RedactingStream

log = logging.getLogger("stratum.executor")

STDOUT_LIMIT = 1024 * 1024  # the most of stdout a node's outputs may take
STDERR_TAIL = 4 * 1024  # the end of stderr kept for the one-line error (errors come last)
LOG_LIMIT = 16 * 1024 * 1024  # per log file on disk; the rest is counted, not kept


@dataclass(frozen=True, slots=True)
class StreamStats:
    """What a process wrote on one stream. `logged` is what reached the log file (after
    masking); `truncated` says the log stops at `LOG_LIMIT` before the stream did."""

    size: int
    sha256: str
    logged: int
    truncated: bool
    redacted: bool


class Capture:
    """One output stream: `head` (raw, first `head_limit` bytes) and `tail` (masked, last
    `tail_limit` bytes) in memory; everything masked to `log` (opened on first use)."""

    def __init__(
        self,
        *,
        head_limit: int = 0,
        tail_limit: int = 0,
        log: Path | None = None,
        log_limit: int = LOG_LIMIT,
        redact: RedactingStream | None = None,
    ) -> None:
        self.head = bytearray()
        self.tail = bytearray()
        self._head_limit = head_limit
        self._tail_limit = tail_limit
        self._log_path = log
        self._log_limit = log_limit
        self._log: BinaryIO | None = None
        self._redact = redact
        self._hash = hashlib.sha256()
        self._size = self._logged = 0
        self._truncated = self._closed = False

    def write(self, data: bytes) -> None:
        """Take one chunk as it arrives (called from the event loop: no waiting here)."""
        if self._closed:  # a pipe outliving the process's record: nothing to add it to
            return
        self._size += len(data)
        self._hash.update(data)
        room = self._head_limit - len(self.head)
        if room > 0:
            self.head += data[:room]
        self._keep(self._redact.feed(data) if self._redact is not None else data)

    def close(self) -> StreamStats:
        """Flush and close the log (creating it, empty, if nothing came); idempotent."""
        if not self._closed:
            if self._redact is not None:
                self._keep(self._redact.flush())
            self._closed = True
            if self._log is None:
                self._open()  # an empty log still says "printed nothing"
            try:
                if self._log is not None:
                    self._log.close()
            except OSError as exc:
                self._give_up(exc)
        return StreamStats(
            size=self._size,
            sha256=self._hash.hexdigest(),
            logged=self._logged,
            truncated=self._truncated,
            redacted=self._redact is not None and self._redact.hit,
        )

    def _keep(self, masked: bytes) -> None:
        if not masked:
            return
        if self._tail_limit:
            self.tail += masked
            if len(self.tail) > self._tail_limit:
                del self.tail[: -self._tail_limit]
        if self._log_path is None:
            return
        room = self._log_limit - self._logged
        if len(masked) > room:
            self._truncated = True
            masked = masked[:room]
        if not masked:
            return
        out = self._log or self._open()
        if out is None:
            return
        try:
            out.write(masked)
        except OSError as exc:
            self._give_up(exc)
            return
        self._logged += len(masked)

    def _open(self) -> BinaryIO | None:
        if self._log_path is not None and self._log_limit > 0:
            try:
                self._log = self._log_path.open("wb")
            except OSError as exc:
                self._give_up(exc)
        return self._log

    def _give_up(self, exc: OSError) -> None:
        """A full or broken disk loses the log, never the run (the DB is the record)."""
        log.warning("cannot write %s: %s", self._log_path, exc)
        self._log_limit = self._logged  # nothing more is written; the log reads truncated
        self._truncated = True
