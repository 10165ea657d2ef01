"""The JetStream adapter: durable pull consumers feeding a function's handler.

One runner per function. `concurrency` workers each hold a pull request on the same
durable consumer (queue semantics, also across processes), so messages are handled in
parallel; messages that share a key (a run id) are handled one at a time. Per message:
parse -> handle (commits to the DB) -> publish what it emitted -> ack. Errors decide
delivery: invalid -> term, retryable -> nak with backoff, anything else -> nak, up to
`max_deliver` attempts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

from stratum.errors import InvalidEventError, StratumError
from stratum.events import Envelope
from stratum.runtime.function import Function, Inbound
from stratum.runtime.keyed_lock import KeyedLocks
from stratum.runtime.publisher import Publisher
from stratum.store import RunStore, StaleWriteError
from stratum.subjects import Subjects

log = logging.getLogger("stratum.runtime")
# how long an idle worker's pull request waits before it is renewed
FETCH_SECONDS = 5.0


async def ensure_streams(jetstream: Any, subjects: Subjects) -> None:
    """Create (or update) the two streams: publishers' events and the functions' events."""
    jsm = jetstream
    for name, stream_subjects in (
        (subjects.events_stream, [subjects.events_wildcard]),
        (subjects.runs_stream, list(subjects.internal_wildcards)),
    ):
        config = StreamConfig(
            name=name,
            subjects=stream_subjects,
            storage=StorageType.FILE,
            duplicate_window=120.0,
        )
        try:
            await jsm.stream_info(name)
            await jsm.update_stream(config)
        except NotFoundError:
            await jsm.add_stream(config)


class JetStreamRunner:
    """Runs one Function against its durable consumer until stopped."""

    def __init__(
        self,
        function: Function,
        jetstream: Any,
        publisher: Publisher,
        store: RunStore,
        *,
        durable_prefix: str,
    ) -> None:
        self.function = function
        self._js = jetstream
        self._publisher = publisher
        self._store = store
        self.durable = f"{durable_prefix}-{function.name}"
        self._locks = KeyedLocks()
        self._stopping = asyncio.Event()
        self._workers: list[asyncio.Task[None]] = []
        self._busy: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        fn = self.function
        config = ConsumerConfig(
            durable_name=self.durable,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=fn.ack_wait,
            max_deliver=fn.max_deliver,
            max_ack_pending=max(fn.concurrency * 4, 256),
            filter_subjects=list(fn.subjects) if len(fn.subjects) > 1 else None,
            filter_subject=fn.subjects[0] if len(fn.subjects) == 1 else None,
        )
        await self._js.add_consumer(fn.stream, config=config)
        for index in range(fn.concurrency):
            subscription = await self._js.pull_subscribe_bind(
                durable=self.durable, stream=fn.stream
            )
            self._workers.append(
                asyncio.create_task(self._work(subscription), name=f"{fn.name}-worker-{index}")
            )

    async def stop(self, drain_seconds: float = 10.0) -> None:
        """Stop taking new messages; let handlers in flight finish (bounded), then leave."""
        self._stopping.set()
        for task in self._workers:
            if task not in self._busy:
                task.cancel()  # waiting on an empty pull: nothing in hand to lose
        if not self._workers:
            return
        _, pending = await asyncio.wait(self._workers, timeout=drain_seconds)
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _work(self, subscription: Any) -> None:
        while not self._stopping.is_set():
            try:
                messages = await subscription.fetch(1, timeout=FETCH_SECONDS)
            except TimeoutError:
                continue
            except asyncio.CancelledError:
                raise
            except Exception as error:  # connection trouble: back off, keep serving
                if self._stopping.is_set():
                    return
                log.warning(
                    "fetch failed", extra={"function": self.function.name, "error": str(error)}
                )
                await asyncio.sleep(0.5)
                continue
            current = asyncio.current_task()
            assert current is not None
            self._busy.add(current)
            try:
                for message in messages:
                    try:
                        await self._process(message)
                    except asyncio.CancelledError:
                        raise
                    except Exception:  # ack/nak itself failed (connection trouble)
                        log.exception(
                            "could not settle a message; JetStream will redeliver it",
                            extra={"function": self.function.name},
                        )
            finally:
                self._busy.discard(current)

    async def _process(self, message: Any) -> None:
        fn = self.function
        delivery = 1
        with contextlib.suppress(Exception):
            delivery = message.metadata.num_delivered
        inbound = Inbound(
            subject=message.subject,
            headers=dict(message.headers or {}),
            body=message.data,
            delivery=delivery,
        )
        heartbeat = self._heartbeat(message)
        key = fn.key(inbound) if fn.key is not None else None
        try:
            if key is None:
                events = await self._handle(inbound)
            else:
                async with self._locks.hold(key):
                    events = await self._handle(inbound)
            await self._publisher.publish_all(events)
            await message.ack()
        except InvalidEventError as error:
            log.error(
                "invalid message terminated",
                extra={"function": fn.name, "subject": inbound.subject, "error": str(error)},
            )
            await message.term()
        except StratumError as error:
            delay = min(0.2 * 2 ** (delivery - 1), 10.0)
            log.warning(
                f"message will be redelivered: {error}",
                extra={"function": fn.name, "error": str(error), "retryable": error.retryable},
            )
            await message.nak(delay=delay)
        except Exception:
            log.exception(
                "handler crashed; message will be redelivered", extra={"function": fn.name}
            )
            await message.nak(delay=min(0.5 * 2 ** (delivery - 1), 30.0))
        finally:
            heartbeat.cancel()

    async def _handle(self, inbound: Inbound) -> Sequence[Envelope]:
        try:
            return await self.function.handle(inbound)
        except StaleWriteError:
            # handled before (a redelivery): re-announce what it caused; the bus drops repeats
            return await self._store.events_caused_by(_message_id(inbound))

    def _heartbeat(self, message: Any) -> _Heartbeat:
        return _Heartbeat(message, max(self.function.ack_wait / 3, 0.5))


class _Heartbeat:
    """Tells JetStream a long handler (a stage running scripts) is still working.

    A timer rather than a task per message: most handlers finish before the first beat.
    """

    def __init__(self, message: Any, interval: float) -> None:
        self._message = message
        self._interval = interval
        self._loop = asyncio.get_running_loop()
        self._sending: set[asyncio.Task[None]] = set()
        self._timer = self._loop.call_later(interval, self._beat)

    def _beat(self) -> None:
        task = self._loop.create_task(self._send())
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)
        self._timer = self._loop.call_later(self._interval, self._beat)

    async def _send(self) -> None:
        with contextlib.suppress(Exception):  # a missed beat only risks a redelivery
            await self._message.in_progress()

    def cancel(self) -> None:
        self._timer.cancel()


def _message_id(inbound: Inbound) -> str:
    """The id of the event in `inbound`: what its own emitted events name as their cause."""
    return inbound.headers.get("Nats-Msg-Id", "")
