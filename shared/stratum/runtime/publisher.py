"""Publishing to JetStream with de-duplication ids."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from stratum.events import Envelope
from stratum.subjects import Subjects


class Publisher:
    """Publishes envelopes on their derived subjects; the event id is the `Nats-Msg-Id`."""

    def __init__(self, jetstream: Any, subjects: Subjects) -> None:
        self._js = jetstream
        self.subjects = subjects

    async def publish(self, event: Envelope) -> None:
        await self._js.publish(
            self.subjects.internal(event.type),
            event.to_bytes(),
            headers={"Nats-Msg-Id": event.id, "Stratum-Run-Id": event.runid},
        )

    async def publish_all(self, events: Sequence[Envelope]) -> None:
        """Publish together: one round trip of acks, not one per event. The PUBs leave in
        list order (each is written before the next starts), so the stream keeps it."""
        await asyncio.gather(*(self.publish(event) for event in events))
