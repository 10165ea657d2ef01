"""One-line error messages from script output, and masking of secret values."""

from __future__ import annotations

import pytest

from stratum.executor._text import Redactor, one_line, stderr_summary

NU_ERROR = b"""Error: nu::shell::error

  \xc3\x97 boom: the disk is full
   ,-[/x/handler.nu:1:15]
 1 | def main [] { error make {msg: "boom"} }
   `----
"""


@pytest.mark.parametrize(
    ("stderr", "summary"),
    [
        (NU_ERROR, "boom: the disk is full"),
        (NU_ERROR.replace("\u00d7".encode(), b"x"), "boom: the disk is full"),
        (b"warming up\nfatal: no network\n\n", "fatal: no network"),
        (b"\x1b[31mred alert\x1b[0m\n", "red alert"),
        (b"", "no stderr"),
        (b"\xff\xfe broken utf8", "\ufffd\ufffd broken utf8"),
    ],
)
def test_stderr_summary(stderr: bytes, summary: str) -> None:
    assert stderr_summary(stderr) == summary


def test_one_line_collapses_and_cuts() -> None:
    assert one_line("a\n  b\tc") == "a b c"
    cut = one_line("x" * 500, limit=50)
    assert len(cut) == 50 and cut.endswith("…")


def test_redactor_masks_longest_first_and_ignores_tiny_values() -> None:
    redactor = Redactor(["abcd", "abcdefgh", "1", ""])
    assert redactor.text("x abcdefgh y abcd 1") == "x *** y *** 1"
    assert redactor.data(b"abcdefgh") == (b"***", True)
    assert redactor.data(b"nothing here") == (b"nothing here", False)
