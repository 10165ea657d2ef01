"""A hash chain over NDJSON lines: tampering with an exported file is detectable offline.

Each line is one canonical JSON object (sorted keys, no spaces, UTF-8):

    {"hash": H(n), "prev": H(n-1), "record": {...}, "seq": n}

where `H(n) = sha256(canonical({"prev": H(n-1), "record": ..., "seq": n}))` in hex and
`H(0) = GENESIS`. Changing, deleting, inserting or moving a line breaks the chain at that
line or the next one. Cutting lines off the end does not, and nor does rewriting the whole
file with fresh hashes (the chain has no key): keep the head hash an export reports and
check it with `verify --head`.

Pure: no files, no clock. The CLI and the HTTP API do the reading and writing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

# the hash line 1 chains from: names the format, so a chain of another kind never verifies
GENESIS = hashlib.sha256(b"stratum.audit.v1").hexdigest()
FIELDS = ("hash", "prev", "record", "seq")


def canonical(value: Any) -> bytes:
    """The one byte form of a JSON value that hashes are taken over."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def link_hash(seq: int, prev: str, record: Mapping[str, Any]) -> str:
    """The hash of line `seq`: over the previous line's hash and this line's content."""
    return hashlib.sha256(canonical({"prev": prev, "record": record, "seq": seq})).hexdigest()


class ChainWriter:
    """Turns records into chained lines, in the order they are given."""

    def __init__(self) -> None:
        self.head = GENESIS
        self.count = 0

    def line(self, record: Mapping[str, Any]) -> bytes:
        """The next line, newline included."""
        seq = self.count + 1
        digest = link_hash(seq, self.head, record)
        encoded = canonical({"hash": digest, "prev": self.head, "record": record, "seq": seq})
        self.head, self.count = digest, seq
        return encoded + b"\n"


@dataclass(frozen=True)
class ChainReport:
    """The outcome of a verification: how many lines held, the last good hash, and the
    first bad line (1-based) with what is wrong with it."""

    lines: int
    head: str
    bad_line: int | None = None
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.bad_line is None


class ChainVerifier:
    """Checks lines one at a time (so an export can be checked as it streams in)."""

    def __init__(self) -> None:
        self.head = GENESIS
        self.count = 0
        self.broken: ChainReport | None = None

    def feed(self, line: bytes) -> bool:
        """Check the next line (without its newline); False once the chain is broken."""
        if self.broken is not None:
            return False
        number = self.count + 1
        reason = self._problem(line, number)
        if reason is not None:
            self.broken = ChainReport(self.count, self.head, number, reason)
            return False
        return True

    def report(self) -> ChainReport:
        return self.broken or ChainReport(self.count, self.head)

    def _problem(self, line: bytes, number: int) -> str | None:
        if not line.strip():
            return "empty line"
        try:
            entry = orjson.loads(line)
        except orjson.JSONDecodeError as error:
            return f"not JSON ({error})"
        if not isinstance(entry, dict) or sorted(entry) != list(FIELDS):
            return f"not a chain line: expected exactly the fields {', '.join(FIELDS)}"
        if entry["seq"] != number:
            return (
                f"sequence number is {entry['seq']!r}, expected {number}: "
                "a line was deleted, inserted or moved"
            )
        if entry["prev"] != self.head:
            what = "the chain's start" if number == 1 else f"line {number - 1}'s hash"
            return f"prev is not {what}: a line before it was changed, deleted, inserted or moved"
        if not isinstance(entry["record"], dict):
            return "record is not a JSON object"
        if entry["hash"] != link_hash(number, self.head, entry["record"]):
            return "content does not match its hash: the line was changed"
        if canonical(entry) != line.rstrip(b"\r"):
            # one byte form only: no duplicate keys or spacing that parsers read differently
            return "not in canonical form (sorted keys, no spaces): the line was rewritten"
        self.head, self.count = entry["hash"], number
        return None


def chain(records: Iterable[Mapping[str, Any]]) -> bytes:
    """Every record as a chained line: a whole export in one call."""
    writer = ChainWriter()
    return b"".join(writer.line(record) for record in records)


def verify_lines(lines: Iterable[bytes]) -> ChainReport:
    """Verify an export's lines (a trailing empty line, from the final newline, is fine)."""
    verifier = ChainVerifier()
    pending: bytes | None = None
    for line in lines:
        if pending is not None and not verifier.feed(pending):
            return verifier.report()
        pending = line.rstrip(b"\n")
    if pending is not None and pending.strip():
        verifier.feed(pending)
    return verifier.report()


def verify_bytes(data: bytes) -> ChainReport:
    """Verify a whole export held in memory."""
    return verify_lines(data.split(b"\n"))
