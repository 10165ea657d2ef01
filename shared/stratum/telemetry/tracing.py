"""One OpenTelemetry trace per run, carried across hops in W3C `traceparent` headers.

Every publish is a PRODUCER span `publish <subject>` whose context goes out in the NATS
headers; every message handled is a CONSUMER span `process <subject>`, a child of that
context (so a run's hops form one trace) with a link to it, as the messaging semantic
conventions describe. An event whose publisher sent a `traceparent` joins the
publisher's trace. Inside those: planning, stages, node attempts, compensation steps and
database transactions get spans of their own, and a node's script receives `TRACEPARENT`.

Configured only by the standard `OTEL_*` environment variables (`setup_from_env`). With
nothing set, tracing is off and costs next to nothing: no span is made at all, yet an
incoming `traceparent` is still carried (a context variable) to every publish and script,
so a publisher's trace reaches the scripts and names the run.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import AbstractContextManager
from contextvars import ContextVar, Token
from types import TracebackType
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import INVALID_SPAN, Link, Span, SpanKind, Status, StatusCode, Tracer

SCOPE = "stratum"
_tracer: Tracer = trace.get_tracer(SCOPE)
_recording = False  # off until `use` gets a provider that records
_installed: Any = None  # the SDK provider `setup_from_env` made, once per process
W3C_HEADERS = ("traceparent", "tracestate")
_TRACEPARENT = re.compile(r"[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}")
# tracing off: the W3C headers of the message being handled, passed on as they came
_carried: ContextVar[dict[str, str]] = ContextVar("stratum_trace_carried", default={})  # noqa: B039


def tracer() -> Tracer:
    return _tracer


def use(provider: trace.TracerProvider) -> None:
    """Record Stratum's spans with `provider` from now on (set up from the environment,
    or a test's in-memory one); the API's own no-op or proxy provider turns it off."""
    global _tracer, _recording
    _tracer = provider.get_tracer(SCOPE)
    _recording = not isinstance(provider, trace.NoOpTracerProvider | trace.ProxyTracerProvider)


def exporters_wanted(environ: Mapping[str, str]) -> list[str]:
    """The span exporters the environment asks for; empty means tracing stays off.

    `OTEL_TRACES_EXPORTER` names them (otlp, console, none); an OTLP endpoint set without
    it means otlp. `OTEL_SDK_DISABLED=true` turns everything off.
    """
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    named = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if not named:
        endpoint = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get(
            "OTEL_EXPORTER_OTLP_ENDPOINT"
        )
        return ["otlp"] if endpoint else []
    return [name.strip() for name in named.split(",") if name.strip() not in ("", "none")]


def setup_from_env(environ: Mapping[str, str] | None = None) -> Any:
    """Install an SDK tracer provider exporting as `OTEL_*` says (once per process: a
    second call returns the first provider); None when off.

    The SDK reads the rest itself: `OTEL_SERVICE_NAME`/`OTEL_RESOURCE_ATTRIBUTES` (the
    resource), `OTEL_TRACES_SAMPLER`, `OTEL_BSP_*` (batching), `OTEL_EXPORTER_OTLP_*`
    (endpoint, headers, timeout). `OTEL_EXPORTER_OTLP_PROTOCOL` picks grpc (default) or
    http/protobuf.
    """
    global _installed
    if _installed is not None:
        return _installed
    environ = os.environ if environ is None else environ
    names = exporters_wanted(environ)
    if not names:
        return None
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create(
        {} if environ.get("OTEL_SERVICE_NAME") else {"service.name": "stratum"}
    )
    provider = TracerProvider(resource=resource)
    for name in names:
        provider.add_span_processor(BatchSpanProcessor(_exporter(name, environ)))
    trace.set_tracer_provider(provider)
    use(provider)
    _installed = provider  # shut down (flushing what is queued) at exit by the SDK
    return provider


def flush(timeout_seconds: float = 5.0) -> None:
    """Export what is queued now (a server stopping), if tracing is on."""
    if _installed is not None:
        _installed.force_flush(int(timeout_seconds * 1000))


def _exporter(name: str, environ: Mapping[str, str]) -> Any:
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    if name != "otlp":
        raise ValueError(f"OTEL_TRACES_EXPORTER: unknown exporter {name!r} (otlp, console, none)")
    protocol = (
        environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "grpc"
    ).strip()
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    if protocol in ("http/protobuf", "http"):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
            OTLPSpanExporter as HttpSpanExporter,
        )

        return HttpSpanExporter()
    raise ValueError(f"OTEL_EXPORTER_OTLP_PROTOCOL: {protocol!r} is not grpc or http/protobuf")


# -- across hops ----------------------------------------------------------------------------


def _messaging(subject: str, operation: str, message_id: str) -> dict[str, str]:
    attributes = {
        "messaging.system": "nats",
        "messaging.destination.name": subject,
        "messaging.operation.name": operation,
        "messaging.operation.type": "send" if operation == "publish" else operation,
    }
    if message_id:
        attributes["messaging.message.id"] = message_id
    return attributes


def publishing(
    subject: str, headers: MutableMapping[str, str], message_id: str
) -> AbstractContextManager[Span]:
    """A PRODUCER span around one publish; its context goes out in `headers`."""
    if not _recording:
        headers.update(_carried.get())
        return _NO_SPAN
    return _producer(subject, headers, message_id)


@contextlib.contextmanager
def _producer(subject: str, headers: MutableMapping[str, str], message_id: str) -> Iterator[Span]:
    with _tracer.start_as_current_span(
        f"publish {subject}",
        kind=SpanKind.PRODUCER,
        attributes=_messaging(subject, "publish", message_id),
    ) as span:
        propagate.inject(headers)
        yield span


def processing(
    subject: str,
    headers: Mapping[str, str],
    *,
    group: str,
    message_id: str,
    attributes: Mapping[str, str | int] | None = None,
) -> AbstractContextManager[Span]:
    """A CONSUMER span around handling one message: a child of the context its publisher
    sent (one trace per run), and linked to it. Off: that context is only carried."""
    if not _recording:
        return _Carrying(headers)
    return _consumer(subject, headers, group, message_id, attributes or {})


@contextlib.contextmanager
def _consumer(
    subject: str,
    headers: Mapping[str, str],
    group: str,
    message_id: str,
    attributes: Mapping[str, str | int],
) -> Iterator[Span]:
    parent = propagate.extract(headers)
    sent = trace.get_current_span(parent).get_span_context()
    with _tracer.start_as_current_span(
        f"process {subject}",
        context=parent,
        kind=SpanKind.CONSUMER,
        links=[Link(sent)] if sent.is_valid else None,
        attributes={
            **_messaging(subject, "process", message_id),
            "messaging.consumer.group.name": group,
            **attributes,
        },
    ) as span:
        yield span


def resumed(headers: Mapping[str, str]) -> AbstractContextManager[Any]:
    """Work done now for a run whose trace context was recorded earlier (a stuck run
    driven again, a queued run admitted): its spans join that run's trace. Without a
    recorded context the current one stays."""
    if "traceparent" not in headers:
        return contextlib.nullcontext()
    if not _recording:
        return _Carrying(headers)
    return _attached(headers)


@contextlib.contextmanager
def _attached(headers: Mapping[str, str]) -> Iterator[None]:
    token = otel_context.attach(propagate.extract(headers))
    try:
        yield
    finally:
        otel_context.detach(token)


def adopt(headers: Mapping[str, str]) -> None:
    """From here to the end of the message being handled, work joins the run whose
    recorded trace context `headers` is. For a handler acting for another run than its
    message's (the planner admitting a queued run when an earlier run ends): the events
    the runner publishes after the handler returns then belong to that run's trace too.
    The message's own span, ending, restores its context."""
    if "traceparent" not in headers:
        return
    if _recording:
        otel_context.attach(propagate.extract(headers))
    else:
        _carried.set(carried(headers))


def current_headers() -> dict[str, str]:
    """The current trace context as W3C headers (`traceparent`, `tracestate`): what a
    record keeps so work done for a run later (a re-drive) joins the run's trace, and what
    a script gets as TRACEPARENT/TRACESTATE."""
    if not _recording:
        return dict(_carried.get())
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def trace_id() -> str:
    """The current trace id in hex ("" outside any trace): what logs and views show."""
    if not _recording:
        return _carried_ids()[0]
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else ""


def span_id() -> str:
    """The current span id in hex (off: the id of the span that sent the message)."""
    if not _recording:
        return _carried_ids()[1]
    context = trace.get_current_span().get_span_context()
    return format(context.span_id, "016x") if context.is_valid else ""


def span(name: str, attributes: Mapping[str, Any] | None = None) -> AbstractContextManager[Span]:
    """An INTERNAL span (planning, a stage, a node attempt, a transaction); an exception
    leaving it marks it failed."""
    if not _recording:
        return _NO_SPAN
    return _tracer.start_as_current_span(name, attributes=attributes)


def failed(current: Span, description: str) -> None:
    """Mark `current` as failed without raising (an attempt that failed is an outcome)."""
    current.set_status(Status(StatusCode.ERROR, description))


# -- tracing off ----------------------------------------------------------------------------


def carried(headers: Mapping[str, str]) -> dict[str, str]:
    """The W3C headers of `headers` worth passing on: a well-formed `traceparent` (ids not
    all zero), with its `tracestate` (at most 512 characters, as the spec bounds it)."""
    parent = headers.get("traceparent", "")
    match = _TRACEPARENT.fullmatch(parent)
    if match is None or set(match[1]) == {"0"} or set(match[2]) == {"0"}:
        return {}
    state = headers.get("tracestate", "")
    return {"traceparent": parent} | ({"tracestate": state} if 0 < len(state) <= 512 else {})


def _carried_ids() -> tuple[str, str]:
    match = _TRACEPARENT.fullmatch(_carried.get().get("traceparent", ""))
    return (match[1], match[2]) if match else ("", "")


class _Carrying:
    """Tracing off: while a message is handled, its trace context is the current one."""

    def __init__(self, headers: Mapping[str, str]) -> None:
        self._headers = carried(headers)
        self._token: Token[dict[str, str]] | None = None

    def __enter__(self) -> Span:
        self._token = _carried.set(self._headers)
        return INVALID_SPAN

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._token is not None:
            _carried.reset(self._token)


class _NoSpan:
    """Tracing off: a span that is not there (its methods are the API's no-ops)."""

    def __enter__(self) -> Span:
        return INVALID_SPAN

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None


_NO_SPAN = _NoSpan()
