"""The JetStream adapter: durable pull consumers feeding a function's handler.

One runner per function. `concurrency` workers each hold a pull request on the same
durable consumer (queue semantics, also across processes), so messages are handled in
parallel; messages that share a key (a run id) are handled one at a time. Per message:
parse -> handle (commits to the DB) -> publish what it emitted -> ack. The error's type
decides delivery (`stratum.runtime.delivery`): retryable -> nak with backoff, a conflict
-> nak at once, deferred (a tenant over a limit) -> nak with the delay it asks for, up to
`max_deliver` deliveries; invalid or permanent -> given up on at the first failure, a
permanent error also ending the message's run (`stratum.runtime.ending`). A message given
up on, or whose last allowed delivery failed, is a dead letter: recorded in the DB,
announced on `<prefix>.dead.<function>`, terminated, and re-drivable with `redrive`.

A function that `listens` also hears those run events on a plain subscription (every
instance, no acks; `stratum.runtime.function.Listener`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Sequence

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StorageType, StreamConfig
from nats.js.client import JetStreamContext
from nats.js.errors import NotFoundError

from stratum.bus.subjects import Subjects
from stratum.clock import iso, utc_now
from stratum.errors import InvalidEventError, StratumError
from stratum.events import Envelope
from stratum.runtime.delivery import GIVE_UP_AT_ONCE, Delivery, backoff, delivery_of, retry_delay
from stratum.runtime.ending import end_run_of
from stratum.runtime.faults import crash_point
from stratum.runtime.function import Function, Inbound, Listener
from stratum.runtime.handling import Handling, original_msg_id
from stratum.runtime.publisher import ORIGINAL_MSG_ID, Publisher
from stratum.store import DeadLetter, RunStore
from stratum.telemetry import metrics
from stratum.telemetry.logs import log_context

log = logging.getLogger("stratum.runtime")
# how long an idle worker's pull request waits before it is renewed
FETCH_SECONDS = 5.0


def durable_name(prefix: str, function: Function) -> str:
    """The durable consumer every instance of `function` shares."""
    return f"{prefix}-{function.name}"


async def ensure_streams(
    jetstream: JetStreamContext, subjects: Subjects, duplicate_window: float = 120.0
) -> None:
    """Create (or update) the streams: publishers' events, the functions' events, and dead
    letters (a stream of their own, so no function's consumer ever receives one). A
    message repeating the `Nats-Msg-Id` of one stored less than `duplicate_window`
    seconds before is dropped."""
    jsm = jetstream
    for name, stream_subjects in (
        (subjects.events_stream, [subjects.events_wildcard]),
        (subjects.runs_stream, list(subjects.internal_wildcards)),
        (subjects.dead_stream, [subjects.dead_wildcard]),
    ):
        config = StreamConfig(
            name=name,
            subjects=stream_subjects,
            storage=StorageType.FILE,
            duplicate_window=duplicate_window,
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
        jetstream: JetStreamContext,
        publisher: Publisher,
        store: RunStore,
        *,
        durable_prefix: str,
        connection: Client | None = None,
    ) -> None:
        self.function = function
        # what `listens` subscribes on (None: the function hears nothing)
        self._connection = connection
        self._js = jetstream
        self._publisher = publisher
        self._store = store
        self.durable = durable_name(durable_prefix, function)
        self._handling = Handling(function, store, publisher, self.durable)
        self._stopping = asyncio.Event()
        self._workers: list[asyncio.Task[None]] = []
        self._busy: set[asyncio.Task[None]] = set()
        # messages handled and acked by this runner (one instance of the function)
        self.handled = 0

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
        await self._listen()
        for index in range(fn.concurrency):
            subscription = await self._js.pull_subscribe_bind(
                durable=self.durable, stream=fn.stream
            )
            self._workers.append(
                asyncio.create_task(self._work(subscription), name=f"{fn.name}-worker-{index}")
            )

    async def _listen(self) -> None:
        """Subscribe to what the function listens to, for its handler's `hear`."""
        fn = self.function
        if not fn.listens:
            return
        if self._connection is None:
            log.warning(
                "no connection to listen on: stops are noticed at the next write",
                extra={"function": fn.name},
            )
            return
        listener: Listener = fn.runnable  # type: ignore[assignment]

        async def heard(message: Msg) -> None:
            try:
                listener.hear(Envelope.from_bytes(message.data))
            except Exception as error:  # a bad message must not stop the others
                log.warning(
                    f"could not hear {message.subject}: {error}", extra={"function": fn.name}
                )

        for subject in fn.listens:
            await self._connection.subscribe(subject, cb=heard)

    async def queue_depth(self) -> tuple[int, int]:
        """(waiting, in flight) on this function's durable consumer, as JetStream counts."""
        info = await self._js.consumer_info(self.function.stream, self.durable)
        return int(info.num_pending or 0), int(info.num_ack_pending or 0)

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

    async def _work(self, subscription: JetStreamContext.PullSubscription) -> None:
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

    async def _process(self, message: Msg) -> None:
        delivery = 1
        with contextlib.suppress(Exception):
            delivery = message.metadata.num_delivered
        inbound = Inbound(
            subject=message.subject,
            headers=dict(message.headers or {}),
            body=message.data,
            delivery=delivery,
        )
        with self._handling.processing(inbound) as handled:
            handled.outcome = await self._settle(message, inbound, delivery)

    async def _settle(self, message: Msg, inbound: Inbound, delivery: int) -> str:
        """Handle, publish, settle; how it was settled: acked, retried or dead_lettered."""
        fn = self.function
        heartbeat = self._heartbeat(message)
        try:
            events = await self._handling.handle(inbound)
            crash_point(f"{fn.name}.after-commit")  # recorded, announced to nobody yet
            await self._publisher.publish_all(events)
            crash_point(f"{fn.name}.after-publish")  # announced, not acked
            await message.ack()
            self.handled += 1
            return "acked"
        except Exception as error:
            return await self._failed(message, inbound, delivery, error)
        finally:
            heartbeat.cancel()

    async def _failed(self, message: Msg, inbound: Inbound, delivery: int, error: Exception) -> str:
        """Settle a message whose handling raised `error`, as the error's type decides."""
        fn = self.function
        kind = delivery_of(error)
        where = {"function": fn.name, "subject": inbound.subject, "delivery": delivery}
        known = isinstance(error, StratumError)
        if kind not in GIVE_UP_AT_ONCE and (delivery < fn.max_deliver or fn.max_deliver <= 0):
            delay = retry_delay(kind, error, delivery)
            if known:
                log.warning(
                    f"message will be redelivered: {error}", extra=where | {"retry_in": delay}
                )
            else:
                log.error(
                    "handler crashed; message will be redelivered", exc_info=error, extra=where
                )
            await message.nak(delay=delay)
            return "retried"
        if kind in GIVE_UP_AT_ONCE:
            log.error(f"message given up on ({kind}): {error}", extra=where)
        else:  # JetStream will not deliver it again: keep it where it can be seen and re-driven
            log.error(
                f"giving up after {delivery} deliveries: {error}", exc_info=not known, extra=where
            )
        try:
            await self._dead_letter(message, inbound, error, end_run=kind is Delivery.PERMANENT)
        except Exception as failure:  # the store or the bus is down: keep the message
            log.warning(
                f"could not give up on the message, delivered again later: {failure}", extra=where
            )
            await message.nak(delay=backoff(delivery))
            return "retried"
        return "dead_lettered"

    async def _dead_letter(
        self, message: Msg, inbound: Inbound, error: Exception, *, end_run: bool = False
    ) -> None:
        """Give up on a message: the DB first (the run's end, if `end_run`, and the dead
        letter: its record is what a re-drive publishes), then the run's end and the
        dead-letter subject, then term so JetStream stops delivering it."""
        letter = dead_letter_of(self.function.name, message, inbound, error)
        ended = await end_run_of(self.function, self._store, inbound, letter) if end_run else []
        await self._store.record_dead_letter(letter)
        tenant = log_context.get().get("tenant", "")
        metrics.DEAD_LETTERS.labels(letter.function, tenant).inc()
        await self._publisher.publish_all(ended)
        subject = self._publisher.subjects.dead(letter.function)
        try:
            await self._js.publish(subject, inbound.body, headers=_announcement(letter))
        except Exception as failure:  # the record stands; the announcement is not load-bearing
            log.warning(
                f"could not announce dead letter {letter.id} on {subject}: {failure}",
                extra={"function": letter.function},
            )
        await message.term()

    def _heartbeat(self, message: Msg) -> _Heartbeat:
        return _Heartbeat(message, max(self.function.ack_wait / 3, 0.5))


async def record_queue_depths(runners: Sequence[JetStreamRunner]) -> None:
    """Set `stratum_queue_depth`/`stratum_queue_in_flight` per function (one reading per
    durable: instances of a function share it)."""
    by_durable = {runner.durable: runner for runner in runners}
    readings = await asyncio.gather(*(runner.queue_depth() for runner in by_durable.values()))
    for runner, (waiting, in_flight) in zip(by_durable.values(), readings, strict=True):
        metrics.QUEUE_DEPTH.labels(runner.function.name).set(waiting)
        metrics.QUEUE_IN_FLIGHT.labels(runner.function.name).set(in_flight)


class _Heartbeat:
    """Tells JetStream a long handler (a stage running scripts) is still working.

    A timer rather than a task per message: most handlers finish before the first beat.
    """

    def __init__(self, message: Msg, interval: float) -> None:
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


# -- dead letters ---------------------------------------------------------------------------


def dead_letter_of(
    function: str, message: Msg | None, inbound: Inbound, error: Exception
) -> DeadLetter:
    """The record of `message` given up on by `function` (None: it came over HTTP). Its id
    derives from the stream position and the function, so recording the same give-up
    twice is one record."""
    now = utc_now()
    stream, sequence, first_at = "", 0, now  # not a JetStream message: no position
    if message is not None:
        with contextlib.suppress(Exception):  # a plain NATS message has no metadata
            meta = message.metadata
            stream, sequence, first_at = meta.stream, meta.sequence.stream, meta.timestamp
    key = f"{stream}\x00{sequence}\x00{function}"
    if not stream:
        key += "\x00" + hashlib.sha256(inbound.subject.encode() + inbound.body).hexdigest()
    return DeadLetter.of(
        ident="dl-" + hashlib.sha256(key.encode()).hexdigest()[:24],
        function=function,
        stream=stream,
        stream_sequence=sequence,
        subject=inbound.subject,
        headers=inbound.headers,
        body=inbound.body,
        error=f"{type(error).__name__}: {error}",
        invalid=isinstance(error, InvalidEventError),
        permanent=delivery_of(error) in GIVE_UP_AT_ONCE,
        deliveries=inbound.delivery,
        first_at=iso(first_at),
        last_at=iso(now),
    )


async def redrive(jetstream: JetStreamContext, store: RunStore, letter: DeadLetter) -> DeadLetter:
    """Publish a dead letter's message again, body and headers as they arrived, on its
    original subject (every consumer of that subject sees it again; handlers are
    idempotent). The caller checks `letter.redrivable`.

    `Nats-Msg-Id` is fresh (letter id + re-drive number) so JetStream's de-duplication keeps
    it, while `Stratum-Original-Msg-Id` still names the first message, so a handler that
    finds the work done re-announces what that message caused. Published, then counted: a
    request retried after a failed count re-publishes under the same id, which is dropped.
    """
    headers = dict(letter.headers)
    original = original_msg_id(letter.headers)
    if original:
        headers[ORIGINAL_MSG_ID] = original
    headers["Nats-Msg-Id"] = f"{letter.id}.redrive.{letter.redriven + 1}"
    headers["Stratum-Redrive-Of"] = letter.id
    await jetstream.publish(letter.subject, letter.raw_body(), headers=headers)
    return await store.mark_redriven(letter.id, iso(utc_now())) or letter


def _announcement(letter: DeadLetter) -> dict[str, str]:
    """Headers of the copy on the dead-letter subject: the original ones (secrets left out)
    and what happened; its `Nats-Msg-Id` is the letter id, so a repeat is dropped."""
    headers = dict(letter.headers)
    original = original_msg_id(letter.headers)
    if original:
        headers[ORIGINAL_MSG_ID] = original
    return headers | {
        "Nats-Msg-Id": letter.id,
        "Stratum-Dead-Letter-Id": letter.id,
        "Stratum-Dead-Function": letter.function,
        "Stratum-Dead-Subject": letter.subject,
        "Stratum-Dead-Deliveries": str(letter.deliveries),
        # a header is one line; the full text is in the record
        "Stratum-Dead-Error": " ".join(letter.error.split())[:500],
    }
