"""The in-progress heartbeat a long handler sends so JetStream does not redeliver it."""

from __future__ import annotations

import asyncio

from stratum.runtime.jetstream import _Heartbeat


class CountingMessage:
    """Records in_progress() calls; the only part of a JetStream message the timer uses."""

    def __init__(self) -> None:
        self.beats = 0

    async def in_progress(self) -> None:
        self.beats += 1


async def test_beats_while_running_and_stops_when_cancelled() -> None:
    message = CountingMessage()
    heartbeat = _Heartbeat(message, 0.05)
    await asyncio.sleep(0.18)
    heartbeat.cancel()
    beats = message.beats
    assert beats >= 3
    await asyncio.sleep(0.15)
    assert message.beats == beats


async def test_a_short_handler_sends_no_beat() -> None:
    message = CountingMessage()
    _Heartbeat(message, 0.05).cancel()
    await asyncio.sleep(0.1)
    assert message.beats == 0
