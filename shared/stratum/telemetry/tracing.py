"""One OpenTelemetry trace per run, carried across hops in W3C `traceparent` headers.

Every publish is a PRODUCER span `publish <subject>` whose context goes out in the NATS
headers; every message handled is a CONSUMER span `process <subject>`, a child of that
context (so a run's hops form one trace) with a link to it, as the messaging semantic
conventions describe. An event whose publisher sent a `traceparent` joins the
publisher's trace. Inside those: planning, stages, node attempts, compensation steps and
database transactions get spans of their own, and a node's script receives `TRACEPARENT`.

Configured only by the standard `OTEL_*` environment variables (`setup_from_env`). With
nothing set, the API's no-op tracer stays in place: no span is recorded or exported, yet
an incoming `traceparent` is still passed on, so a publisher's trace reaches the scripts.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode, Tracer

SCOPE = "stratum"
_tracer: Tracer = trace.get_tracer(SCOPE)
_installed: Any = None  # the SDK provider `setup_from_env` made, once per process


def tracer() -> Tracer:
    return _tracer


def use(provider: trace.TracerProvider) -> None:
    """Record Stratum's spans with `provider` from now on (set up from the environment,
    or a test's in-memory one)."""
    global _tracer
    _tracer = provider.get_tracer(SCOPE)


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


@contextlib.contextmanager
def publishing(subject: str, headers: MutableMapping[str, str], message_id: str) -> Iterator[Span]:
    """A PRODUCER span around one publish; its context goes out in `headers`."""
    with _tracer.start_as_current_span(
        f"publish {subject}",
        kind=SpanKind.PRODUCER,
        attributes=_messaging(subject, "publish", message_id),
    ) as span:
        propagate.inject(headers)
        yield span


@contextlib.contextmanager
def processing(
    subject: str,
    headers: Mapping[str, str],
    *,
    group: str,
    message_id: str,
    attributes: Mapping[str, str | int] | None = None,
) -> Iterator[Span]:
    """A CONSUMER span around handling one message: a child of the context its publisher
    sent (one trace per run), and linked to it."""
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
            **(attributes or {}),
        },
    ) as span:
        yield span


@contextlib.contextmanager
def resumed(headers: Mapping[str, str]) -> Iterator[None]:
    """Work done now for a run whose trace context was recorded earlier (a stuck run
    driven again, a queued run admitted): its spans join that run's trace. Without a
    recorded context the current one stays."""
    if "traceparent" not in headers:
        yield
        return
    token = otel_context.attach(propagate.extract(headers))
    try:
        yield
    finally:
        otel_context.detach(token)


def current_headers() -> dict[str, str]:
    """The current trace context as W3C headers (`traceparent`, `tracestate`): what a
    record keeps so work done for a run later (a re-drive) joins the run's trace."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def traceparent() -> str:
    """The current span as a `traceparent` value, for a script's environment ("" if none)."""
    return current_headers().get("traceparent", "")


def trace_id() -> str:
    """The current trace id in hex ("" outside any trace): what logs and views show."""
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else ""


def span_id() -> str:
    context = trace.get_current_span().get_span_context()
    return format(context.span_id, "016x") if context.is_valid else ""


@contextlib.contextmanager
def span(name: str, attributes: Mapping[str, Any] | None = None) -> Iterator[Span]:
    """An INTERNAL span (planning, a stage, a node attempt, a transaction); an exception
    leaving it marks it failed."""
    with _tracer.start_as_current_span(name, attributes=attributes) as current:
        yield current


def failed(current: Span, description: str) -> None:
    """Mark `current` as failed without raising (an attempt that failed is an outcome)."""
    current.set_status(Status(StatusCode.ERROR, description))
