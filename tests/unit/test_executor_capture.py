"""Output capture: bounded memory, masked logs cut at a limit, hashes of the real stream."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from stratum.executor._text import Redactor
from stratum.executor.capture import Capture

SECRET = "hunter2-very-secret"


def chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


@pytest.mark.parametrize("size", [1, 2, 3, 7, 19, 64, 10_000])
def test_stream_masks_secrets_split_across_chunks(size: int) -> None:
    redactor = Redactor([SECRET, "abcd"])
    data = f"start {SECRET} mid abcd {SECRET}{SECRET} end abc".encode()
    stream = redactor.stream()
    out = b"".join(stream.feed(chunk) for chunk in chunks(data, size)) + stream.flush()
    assert out == redactor.data(data)[0] == b"start *** mid *** ****** end abc"
    assert stream.hit


def test_stream_without_secrets_passes_through() -> None:
    stream = Redactor([]).stream()
    assert stream.feed(b"abc") == b"abc" and stream.flush() == b"" and not stream.hit


def test_capture_keeps_head_tail_and_cuts_the_log(tmp_path: Path) -> None:
    log = tmp_path / "out.log"
    capture = Capture(head_limit=10, tail_limit=6, log=log, log_limit=25)
    data = bytes(range(48, 48 + 40))  # 40 printable bytes
    for chunk in chunks(data, 7):
        capture.write(chunk)
    stats = capture.close()

    assert bytes(capture.head) == data[:10] and bytes(capture.tail) == data[-6:]
    assert log.read_bytes() == data[:25]
    assert (stats.size, stats.logged, stats.truncated) == (40, 25, True)
    assert stats.sha256 == hashlib.sha256(data).hexdigest()
    capture.write(b"late")  # after close: ignored, the record is final
    assert capture.close() == stats


def test_capture_masks_the_log_and_tail_but_hashes_the_raw_stream(tmp_path: Path) -> None:
    log = tmp_path / "err.log"
    capture = Capture(tail_limit=8, log=log, redact=Redactor([SECRET]).stream())
    data = f"oops {SECRET}".encode()
    for chunk in chunks(data, 3):
        capture.write(chunk)
    stats = capture.close()
    assert log.read_bytes() == b"oops ***"
    assert bytes(capture.tail) == b"oops ***"
    assert stats.redacted and stats.sha256 == hashlib.sha256(data).hexdigest()


def test_empty_stream_still_leaves_an_empty_log(tmp_path: Path) -> None:
    log = tmp_path / "quiet.log"
    stats = Capture(log=log).close()
    assert log.read_bytes() == b"" and stats.size == 0 and not stats.truncated


def test_unwritable_log_loses_the_log_not_the_capture(tmp_path: Path) -> None:
    capture = Capture(head_limit=4, log=tmp_path / "missing-dir" / "out.log")
    capture.write(b"hello")
    stats = capture.close()
    assert bytes(capture.head) == b"hell" and stats.size == 5
    assert stats.truncated and stats.logged == 0
