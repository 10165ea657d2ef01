"""The Knative adapter: one function as a CloudEvents HTTP endpoint.

A Trigger POSTs an event (binary or structured mode) to `/`. It becomes the `Inbound` the
JetStream runner would have made of the same event on its subject, and is handled by the
same `Handling` (log context and span from `traceparent`, per-run lock, re-announce when
the message was handled before). The reply is the first event the handler emitted, as a
binary-mode CloudEvent (the broker routes it on); every further event is POSTed to the
sink (`K_SINK`) before the reply leaves, so a broker retry after a lost reply only
repeats them. Status codes steer the broker's delivery, from the error's type as on the
bus (`stratum.runtime.delivery`; Knative retries 5xx, 409 and 429). A permanent error
ends the message's run as on the bus, the end POSTed to the sink before the answer.

| outcome | status |
|---|---|
| events emitted / none | 200 with the first / 202 |
| invalid event (`InvalidEventError`) | 400, `{"error": ...}`, a dead letter recorded |
| permanent (`UnknownRunError`, `RefusedError`, ...) | 202 once its dead letter is recorded |
| retryable (`RetryableError`, any error not Stratum's) | 503 with `Retry-After` |
| a conflict (`ConflictError`) | 409 |
| deferred (`DeferredError`: tenant over its rate) | 429 with `Retry-After` |

`GET /healthz` answers 200 while the process serves (liveness), its `status` "degraded"
while what the function reads (definitions, policies) is left over from a failed load, as
`stratum up` says it (`stratum.telemetry.health`); `GET /readyz` only when what the function needs
(the database, a graph, the policies) is there.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import httpx
import orjson
from cloudevents.core.bindings.http import HTTPMessage, from_http, to_binary
from cloudevents.core.exceptions import BaseCloudEventException
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from stratum.bus.subjects import Subjects
from stratum.errors import DeferredError, InvalidEventError, RetryableError, StratumError
from stratum.events import Envelope, json_object
from stratum.graph.triggers import matches
from stratum.runtime.delivery import GIVE_UP_AT_ONCE, Delivery, backoff, delivery_of
from stratum.runtime.ending import end_run_of
from stratum.runtime.function import Function, Inbound
from stratum.runtime.handling import Handling
from stratum.runtime.jetstream import dead_letter_of
from stratum.runtime.publisher import TENANT_HEADER
from stratum.store import RunStore
from stratum.telemetry import metrics, tracing
from stratum.telemetry.health import LoadState, health_body
from stratum.telemetry.logs import log_context

log = logging.getLogger("stratum.runtime.http")
FORMAT = JSONFormat()
INTERNAL_TYPE_PREFIX = "stratum."
# attributes the SDK would make up when absent (an id defeats de-duplication)
REQUIRED = ("specversion", "id", "source", "type")
TRACE_HEADERS = ("traceparent", "tracestate")
SINK_SECONDS = 30.0
# what each way of settling a failed message answers (`Delivery` explains them)
STATUS = {
    Delivery.RETRY: 503,
    Delivery.CONFLICT: 409,
    Delivery.DEFER: 429,
    Delivery.PERMANENT: 202,
    Delivery.INVALID: 400,
}
# Probes: None when ready, else what is missing
Readiness = Callable[[], Awaitable[str | None]]
# What the function reads that a reload can leave degraded, by name ("definitions", ...)
Loaded = Callable[[], Mapping[str, LoadState]]


class SinkPublisher:
    """Announces events as binary-mode CloudEvents POSTed to the sink (Knative's
    `K_SINK`: the broker), each in a PRODUCER span whose `traceparent` goes along."""

    def __init__(self, subjects: Subjects, sink: str, *, timeout: float = SINK_SECONDS) -> None:
        self.subjects = subjects
        self.sink = sink
        self._timeout = timeout
        self._client: httpx.AsyncClient | None = None

    async def publish(self, event: Envelope) -> None:
        if not self.sink:
            # retried by the broker: the sink may be bound (SinkBinding) by then
            raise RetryableError(f"no sink (K_SINK) to send {event.type} {event.id} to")
        headers, body = binary_message(event)
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self._timeout)
        with tracing.publishing(self.subjects.internal(event.type), headers, event.id):
            response = await self._client.post(self.sink, content=body, headers=headers)
        if response.status_code >= 300:
            raise RetryableError(
                f"sink {self.sink} answered {response.status_code} to {event.type} {event.id}"
            )

    async def publish_all(self, events: Sequence[Envelope]) -> None:
        """One after the other, in the order the handler emitted them."""
        for event in events:
            await self.publish(event)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def binary_message(event: Envelope) -> tuple[dict[str, str], bytes]:
    """`event` as an HTTP binary-mode CloudEvent: `ce-*` headers (the `tenant` and
    `runid` extensions included), `content-type`, the data as the body."""
    attributes: dict[str, Any] = {
        "specversion": event.specversion,
        "id": event.id,
        "source": event.source,
        "type": event.type,
        "time": event.time,
        "subject": event.subject,
        "datacontenttype": event.datacontenttype,
        "tenant": event.tenant,
        "runid": event.runid,
    }
    if event.resumption:
        attributes["resumption"] = event.resumption
    message = to_binary(CloudEvent(attributes, event.data), FORMAT)
    return dict(message.headers), message.body


def consumes_publisher_events(function: Function, subjects: Subjects) -> bool:
    """Whether `function` reads publishers' events (ingest) rather than internal ones."""
    return subjects.events_wildcard in function.subjects


def accepts(function: Function, subjects: Subjects, event_type: str) -> bool:
    """Whether `function` takes events of `event_type`: what its Trigger filters on.
    Ingest takes every type but Stratum's own (`stratum.*`); the others, the internal
    types whose subject one of theirs matches, exactly as on the bus."""
    internal = event_type.startswith(INTERNAL_TYPE_PREFIX)
    if consumes_publisher_events(function, subjects):
        return not internal
    subject = subjects.internal(event_type)
    return internal and any(matches(pattern, subject) for pattern in function.subjects)


def inbound_of(
    function: Function, subjects: Subjects, headers: Mapping[str, str], body: bytes
) -> Inbound:
    """The message the JetStream adapter would have handed `function` for this request
    (`headers` with lower-case names, as HTTP has them); InvalidEventError says what is
    wrong with it."""
    carried = {name: headers[name] for name in TRACE_HEADERS if name in headers}
    # Stratum's own headers (signatures, re-drive ids) under the names the handlers read
    stratum = {
        _canonical(name): value
        for name, value in headers.items()
        if name.startswith(("stratum-", "nats-"))
    }
    binary = any(name.startswith("ce-") for name in headers)
    if consumes_publisher_events(function, subjects):
        return _publisher_event(subjects, headers, body, binary, stratum | carried)
    return _internal_event(function, subjects, headers, body, stratum | carried)


def _publisher_event(
    subjects: Subjects,
    headers: Mapping[str, str],
    body: bytes,
    binary: bool,
    extra: dict[str, str],
) -> Inbound:
    """A publisher's event, as ingest parses it (`parse_incoming` does the checking) on
    the subject `<prefix>.events.<tenant>.<type>` it would have been published on."""
    if binary:
        kind, tenant = headers.get("ce-type"), headers.get("ce-tenant")
        passed = {name: value for name, value in headers.items() if name.startswith("ce-")}
        if "content-type" in headers:
            passed["content-type"] = headers["content-type"]
    else:
        document = json_object(body)
        kind, tenant, passed = document.get("type"), document.get("tenant"), {}
    if not isinstance(kind, str) or not kind:
        raise InvalidEventError("not a valid CloudEvent: missing required attribute(s) type")
    tenant = tenant or headers.get(TENANT_HEADER.lower())
    if not isinstance(tenant, str) or not tenant:
        raise InvalidEventError(
            "no tenant: set the CloudEvent's tenant extension attribute "
            f"(ce-tenant) or a {TENANT_HEADER} header"
        )
    return Inbound(subjects.event(tenant, kind), passed | extra, body)


def _internal_event(
    function: Function,
    subjects: Subjects,
    headers: Mapping[str, str],
    body: bytes,
    extra: dict[str, str],
) -> Inbound:
    """One of Stratum's own events, as the bus carries it: the structured JSON body,
    with the id, run and tenant headers the publisher sets."""
    if any(name.startswith("ce-") for name in headers):
        present = {name.removeprefix("ce-") for name in headers if name.startswith("ce-")}
    else:
        present = set(json_object(body))
    missing = [name for name in (*REQUIRED, "time") if name not in present]
    if missing:
        raise InvalidEventError(
            f"not a valid CloudEvent: missing required attribute(s) {', '.join(missing)}"
        )
    try:
        event = from_http(HTTPMessage(headers=dict(headers), body=body), FORMAT)
        attributes = dict(event.get_attributes())
        if str(attributes.get("datacontenttype", "")).split(";")[0].strip() == "application/json":
            del attributes["datacontenttype"]  # the envelope's own (a charset may follow)
        data = event.get_data()
        if isinstance(data, bytes | str):
            data = orjson.loads(data) if data else {}
        envelope = Envelope.model_validate({**attributes, "data": data})
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "event"
        raise InvalidEventError(f"not a Stratum event: {where}: {first['msg']}") from None
    except (BaseCloudEventException, ValueError, TypeError, orjson.JSONDecodeError) as error:
        raise InvalidEventError(f"not a valid CloudEvent: {error}") from None
    if not accepts(function, subjects, envelope.type):
        raise InvalidEventError(f"{function.name} does not consume events of type {envelope.type}")
    subject = subjects.internal(envelope.type)
    ids = {"Nats-Msg-Id": envelope.id, "Stratum-Run-Id": envelope.runid}
    return Inbound(subject, ids | {TENANT_HEADER: envelope.tenant} | extra, envelope.body)


def _canonical(name: str) -> str:
    """`stratum-run-id` -> `Stratum-Run-Id`: the spelling NATS headers keep."""
    return "-".join(part.capitalize() for part in name.split("-"))


class FunctionEndpoint:
    """Serves one Function over CloudEvents HTTP; `app` is the ASGI application."""

    def __init__(
        self,
        function: Function,
        store: RunStore,
        sink: SinkPublisher,
        *,
        group: str = "",
        ready: Readiness | None = None,
        loaded: Loaded | None = None,
    ) -> None:
        self.function = function
        self._store = store
        self._sink = sink
        self._ready = ready
        self._loaded = loaded
        self._handling = Handling(function, store, sink, group or function.name)
        self.app = Starlette(
            routes=[
                Route("/", self._receive, methods=["POST"]),
                Route("/healthz", self._live, methods=["GET"]),
                Route("/readyz", self._readiness, methods=["GET"]),
            ]
        )

    async def _live(self, request: Request) -> Response:
        parts = self._loaded() if self._loaded is not None else {}
        return JSONResponse(health_body(parts, function=self.function.name))

    async def _readiness(self, request: Request) -> Response:
        missing = await self._ready() if self._ready is not None else None
        if missing:
            return JSONResponse({"ready": False, "reason": missing}, status_code=503)
        return JSONResponse({"ready": True, "function": self.function.name})

    async def _receive(self, request: Request) -> Response:
        body = await request.body()
        headers = {name.lower(): value for name, value in request.headers.items()}
        try:
            inbound = inbound_of(self.function, self._sink.subjects, headers, body)
        except InvalidEventError as error:
            # nothing names a run or tenant yet: answered, logged, not stored
            log_context.set({"function": self.function.name})
            log.warning("invalid request rejected", extra={"error": str(error)})
            metrics.MESSAGES.labels(self.function.name, "rejected").inc()
            return _error(400, error)
        with self._handling.processing(inbound) as handled:
            handled.outcome, response = await self._settle(inbound)
        return response

    async def _settle(self, inbound: Inbound) -> tuple[str, Response]:
        try:
            events = await self._handling.handle(inbound)
            # the rest before the reply: a retry after a lost reply repeats, never loses
            await self._sink.publish_all(events[1:])
        except Exception as error:
            return await self._failed(inbound, error)
        if not events:
            return "acked", Response(status_code=202)
        return "acked", self._reply(events[0])

    async def _failed(self, inbound: Inbound, error: Exception) -> tuple[str, Response]:
        """The answer for a message whose handling raised `error`, as its type decides."""
        fn = self.function
        kind = delivery_of(error)
        where = {"function": fn.name, "subject": inbound.subject}
        if kind in GIVE_UP_AT_ONCE:
            log.error(f"message given up on ({kind}): {error}", extra=where)
            try:
                letter = await self._dead_letter(inbound, error, end_run=kind is Delivery.PERMANENT)
            except Exception as failure:
                if kind is Delivery.INVALID:  # the answer still says what was wrong
                    log.warning(f"could not record the dead letter: {failure}", extra=where)
                    return "dead_lettered", _error(400, error)
                # accepted only once recorded: until then the broker must try again
                log.warning(f"could not give up on the message: {failure}", extra=where)
                return "retried", _error(503, failure, _retry_after(backoff(1)))
            return "dead_lettered", _error(STATUS[kind], error, body={"dead_letter": letter})
        if isinstance(error, StratumError):
            log.warning(f"message will be retried ({kind}): {error}", extra=where)
        else:
            log.error("handler crashed; the broker will retry", exc_info=error, extra=where)
        headers = None
        if kind is Delivery.DEFER and isinstance(error, DeferredError):
            headers = _retry_after(error.delay)
        elif kind is Delivery.RETRY:
            headers = _retry_after(backoff(1))  # the broker counts the attempts, not Stratum
        return "retried", _error(STATUS[kind], error, headers)

    def _reply(self, event: Envelope) -> Response:
        headers, body = binary_message(event)
        with tracing.publishing(self._sink.subjects.internal(event.type), headers, event.id):
            return Response(body, status_code=200, headers=headers)

    async def _dead_letter(self, inbound: Inbound, error: Exception, *, end_run: bool) -> str:
        """Recorded as the JetStream runner records one (no stream position: its id
        derives from the subject and body), after the run's end if `end_run`, which goes
        to the sink before the answer; its id. The broker's dead-letter sink gets what
        it answers 400 to."""
        letter = dead_letter_of(self.function.name, None, inbound, error)
        ended = await end_run_of(self.function, self._store, inbound, letter) if end_run else []
        await self._store.record_dead_letter(letter)
        tenant = log_context.get().get("tenant", "")
        metrics.DEAD_LETTERS.labels(letter.function, tenant).inc()
        await self._sink.publish_all(ended)
        return letter.id


def _error(
    status: int,
    error: Exception,
    headers: dict[str, str] | None = None,
    *,
    body: dict[str, str] | None = None,
) -> Response:
    text = str(error) if isinstance(error, StratumError) else f"{type(error).__name__}"
    return JSONResponse(
        {"error": text, "kind": type(error).__name__, **(body or {})},
        status_code=status,
        headers=headers,
    )


def _retry_after(seconds: float) -> dict[str, str]:
    return {"Retry-After": str(max(1, math.ceil(seconds)))}
