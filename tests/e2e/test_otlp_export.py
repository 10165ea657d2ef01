"""Real OTLP export from a real `stratum up`: configured only by the `OTEL_*` variables the
README gives, over gRPC (the default) and OTLP/HTTP, to a receiver this test runs on
loopback. One `stratum emit ... --wait` later, the receiver holds the run's whole trace:
one tree, rooted at the ingest function's CONSUMER span (the CLI runs without `OTEL_*`
here, so the trace starts in Stratum), under the service name the environment gave.
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span

ROOT = Path(__file__).resolve().parents[2]
STRATUM = str(Path(sys.executable).parent / "stratum")
SERVICE = "stratum-test"
SAMPLE = ("--data", '{"source": "nickel/examples/sample-crate"}')
EXPECTED_NAMES = {
    "plan",
    "stage 0",
    "stage 1",
    "execute fmt-crate",
    "execute lint-crate",
    "execute build-crate",
    "surrealdb transaction",
}


class Received:
    """Every span a receiver got, with its resource's `service.name`; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spans: list[tuple[str, Span]] = []
        self.requests = 0

    def add(self, request: ExportTraceServiceRequest) -> None:
        found: list[tuple[str, Span]] = []
        for resource_spans in request.resource_spans:
            service = next(
                (
                    a.value.string_value
                    for a in resource_spans.resource.attributes
                    if a.key == "service.name"
                ),
                "",
            )
            for scope_spans in resource_spans.scope_spans:
                found.extend((service, span) for span in scope_spans.spans)
        with self._lock:
            self.requests += 1
            self._spans.extend(found)

    def of_trace(self, trace_id: str) -> list[tuple[str, Span]]:
        wanted = bytes.fromhex(trace_id)
        with self._lock:
            return [(service, span) for service, span in self._spans if span.trace_id == wanted]


class _TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, received: Received) -> None:
        self.received = received

    def Export(
        self, request: ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> ExportTraceServiceResponse:
        self.received.add(request)
        return ExportTraceServiceResponse()


@contextmanager
def grpc_receiver(received: Received) -> Iterator[str]:
    """An OTLP/gRPC trace receiver on loopback; yields its endpoint URL."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_TraceService(received), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop(grace=2).wait(timeout=10)


def _http_handler(received: Received) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the exporter's session expects

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.path != "/v1/traces":
                self.reply(404, b"")
                return
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            received.add(ExportTraceServiceRequest.FromString(body))
            self.reply(200, ExportTraceServiceResponse().SerializeToString())

        def reply(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


@contextmanager
def http_receiver(received: Received) -> Iterator[str]:
    """An OTLP/HTTP trace receiver (POST /v1/traces) on loopback; yields its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _http_handler(received))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


RECEIVERS: dict[str, Callable[[Received], Any]] = {
    "grpc": grpc_receiver,
    "http/protobuf": http_receiver,
}


def base_env(data_dir: Path) -> dict[str, str]:
    """This environment without any `OTEL_*`, pointed at the test's data dir."""
    values = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    values.update({"STRATUM_DATA_DIR": str(data_dir), "STRATUM_WATCH": "false"})
    return values


@contextmanager
def stratum_up(env: dict[str, str], data_dir: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`stratum up` in a process group of its own; SIGTERM (then SIGKILL) to that group."""
    data_dir.mkdir(parents=True, exist_ok=True)
    log = data_dir / "up.log"
    with log.open("ab") as out:  # the child keeps its own copy of the fd
        process = subprocess.Popen(
            [STRATUM, "up"], cwd=ROOT, env=env, stdout=out, stderr=out, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 60
        while not (data_dir / "endpoint.json").is_file():
            if process.poll() is not None:
                raise AssertionError(f"stratum up exited:\n{log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError("stratum up did not come up within 60 s")
            time.sleep(0.1)
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=30)


def problems(found: list[tuple[str, Span]]) -> list[str]:
    """What the received trace still lacks (empty: it is whole)."""
    spans = [span for _, span in found]
    names = {span.name for span in spans}
    missing = [f"no span named {name!r}" for name in sorted(EXPECTED_NAMES - names)]
    kinds = {(span.name.split(" ", 1)[0], span.kind) for span in spans}
    if ("process", Span.SpanKind.SPAN_KIND_CONSUMER) not in kinds:
        missing.append("no CONSUMER `process ...` span")
    if ("publish", Span.SpanKind.SPAN_KIND_PRODUCER) not in kinds:
        missing.append("no PRODUCER `publish ...` span")
    ids = {span.span_id for span in spans}
    orphans = [s.name for s in spans if s.parent_span_id and s.parent_span_id not in ids]
    if orphans:
        missing.append(f"parents not received yet for {sorted(orphans)}")
    return missing


def whole_trace(received: Received, trace_id: str, timeout: float = 30) -> list[tuple[str, Span]]:
    deadline = time.monotonic() + timeout
    while True:
        found = received.of_trace(trace_id)
        left = problems(found) if found else ["no span of the trace"]
        if not left:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"trace {trace_id} incomplete after {timeout} s: {left}")
        time.sleep(0.2)


def check_tree(found: list[tuple[str, Span]], subject: str) -> None:
    """One service, one root (the ingest CONSUMER span of the emitted event), a tree."""
    assert {service for service, _ in found} == {SERVICE}
    spans = [span for _, span in found]
    assert len({span.span_id for span in spans}) == len(spans), "a span was exported twice"
    roots = [span for span in spans if not span.parent_span_id]
    assert [(r.name, r.kind) for r in roots] == [
        (f"process {subject}", Span.SpanKind.SPAN_KIND_CONSUMER)
    ]
    ids = {span.span_id for span in spans}
    assert all(span.parent_span_id in ids for span in spans if span is not roots[0])
    assert problems(found) == []


def sdk_complaints(log: Path) -> list[str]:
    """What the OpenTelemetry SDK and exporters logged (JSON lines of `stratum up`)."""
    complaints = []
    for line in log.read_text().splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue  # the plain banner lines
        if isinstance(entry, dict) and str(entry.get("logger", "")).startswith("opentelemetry"):
            complaints.append(f"{entry.get('level')}: {entry.get('msg')}")
    return complaints


@pytest.mark.timeout(240)
@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_stratum_up_exports_a_runs_whole_trace_over_otlp(protocol: str, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    cli_env = base_env(data_dir)  # no OTEL_*: the trace starts in Stratum, not in the CLI
    received = Received()
    with RECEIVERS[protocol](received) as endpoint:
        up_env = cli_env | {
            "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
            "OTEL_SERVICE_NAME": SERVICE,
            "OTEL_BSP_SCHEDULE_DELAY": "200",
        }
        with stratum_up(up_env, data_dir) as process:
            done = subprocess.run(
                [STRATUM, "emit", "crate.push", "--tenant", "acme", "--json", "--wait", *SAMPLE],
                cwd=ROOT,
                env=cli_env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert done.returncode == 0, done.stderr
            view = json.loads(done.stdout)
            assert view["status"] == "Succeeded"
            trace_id = view["trace_id"]
            assert len(trace_id) == 32 and set(trace_id) != {"0"}

            endpoint_file = json.loads((data_dir / "endpoint.json").read_text())
            subject = f"{endpoint_file['subject_prefix']}.events.acme.crate.push"
            check_tree(whole_trace(received, trace_id), subject)
        assert process.returncode == 0, (data_dir / "up.log").read_text()[-3000:]
        # stopping flushed what was queued: the trace is still one whole tree
        check_tree(received.of_trace(trace_id), subject)
    # the exporters had nothing to complain about (no retry, no dropped batch)
    assert sdk_complaints(data_dir / "up.log") == []
