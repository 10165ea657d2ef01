"""Turning process output into the one-line, secret-free messages Stratum records."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable

import orjson

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
# nu reports errors through miette: the message is the line that starts with "x ".
_MIETTE_MESSAGE = re.compile(r"^\s*[x\u00d7]\s+(\S.*)$")
MAX_LINE = 200
_MASK = "***"
# Shorter values ("1", "yes") would mask ordinary text and cannot be meaningful secrets.
_MIN_SECRET = 4


def one_line(text: str, limit: int = MAX_LINE) -> str:
    """Collapse whitespace runs (newlines included) and cut to `limit` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def stderr_summary(stderr: bytes) -> str:
    """The most telling line of a script's stderr: nu's error message if there is one,
    else the last non-empty line."""
    lines = [_ANSI.sub("", line) for line in stderr.decode("utf-8", "replace").splitlines()]
    for line in lines:
        match = _MIETTE_MESSAGE.match(line)
        if match:
            return one_line(match.group(1))
    for line in reversed(lines):
        if line.strip():
            return one_line(line)
    return "no stderr"


def secret_forms(value: str) -> set[str]:
    """`value` as a script is likely to print it: raw, base64 (standard and URL-safe, with
    and without padding), percent-encoded (as common encoders do it: `/` and `-_.~` kept or
    not, space as %20 or +, upper- or lower-case hex) and JSON-escaped. Base64 is only
    caught standing on its own: inside a longer encoded blob its letters depend on the
    bytes before it."""
    raw = value.encode()
    standard = base64.b64encode(raw).decode()
    urlsafe = base64.urlsafe_b64encode(raw).decode()
    forms = {value, standard, standard.rstrip("="), urlsafe, urlsafe.rstrip("=")}
    forms |= {
        _percent(raw, keep, plus, hexdigits)
        for keep in ("", "/", "-_.~", "-_.~/")
        for plus in (False, True)
        for hexdigits in ("%{:02X}", "%{:02x}")
    }
    forms.add(orjson.dumps(value).decode()[1:-1])
    return forms


def _percent(raw: bytes, keep: str, plus: bool, hexdigits: str) -> str:
    out = []
    for byte in raw:
        char = chr(byte)
        if byte < 0x80 and (char.isalnum() or char in keep):
            out.append(char)
        elif plus and char == " ":
            out.append("+")
        else:
            out.append(hexdigits.format(byte))
    return "".join(out)


class Redactor:
    """Masks the values of caller-supplied variables and secrets in what we write."""

    __slots__ = ("_bytes", "_strs")

    def __init__(self, values: Iterable[str]) -> None:
        # Longest first, so a secret containing another is masked whole.
        keep = sorted({v for v in values if len(v) >= _MIN_SECRET}, key=len, reverse=True)
        self._strs = tuple(keep)
        self._bytes = tuple(v.encode() for v in keep)

    def __bool__(self) -> bool:
        return bool(self._strs)

    def found(self, data: bytes) -> bool:
        """Whether `data` holds any secret."""
        return any(value in data for value in self._bytes)

    def text(self, text: str) -> str:
        """`text` with every secret replaced by ***."""
        for value in self._strs:
            text = text.replace(value, _MASK)
        return text

    def data(self, data: bytes) -> tuple[bytes, bool]:
        """`data` with every secret replaced, and whether anything was."""
        hit = False
        for value in self._bytes:
            if value in data:
                hit = True
                data = data.replace(value, _MASK.encode())
        return data, hit

    def stream(self) -> RedactingStream:
        """A masker for output that arrives in chunks (a secret may straddle two)."""
        return RedactingStream(self)


class RedactingStream:
    """Masks secrets in a stream: holds back the last `longest secret - 1` bytes of each
    chunk, since they may be the start of a secret that the next chunk completes."""

    __slots__ = ("_hold", "_pending", "_redactor", "hit")

    def __init__(self, redactor: Redactor) -> None:
        self._redactor = redactor
        self._hold = max((len(v) for v in redactor._bytes), default=1) - 1
        self._pending = b""
        self.hit = False

    def feed(self, data: bytes) -> bytes:
        """What of `pending + data` can be released, masked."""
        if not self._redactor._bytes:
            return data
        masked, hit = self._redactor.data(self._pending + data)
        self.hit = self.hit or hit
        cut = max(len(masked) - self._hold, 0)
        self._pending = masked[cut:]
        return masked[:cut]

    def flush(self) -> bytes:
        """The held-back end of the stream (it can no longer become a secret)."""
        rest, self._pending = self._pending, b""
        return rest
