"""A stand-in OTLP/HTTP collector for the tracing bench: answers POST /v1/traces with 200
and counts what arrived (requests, bytes, spans, traces and their root spans' names);
GET /stats returns the counts as JSON.

    python -m bench.otlp_sink   # prints its 127.0.0.1 port on the first line, then serves

It runs as its own process, as a collector would, so decoding what it receives does not
take the benchmarked process's CPU (GIL) time.
"""

from __future__ import annotations

import gzip
import json
import threading
from collections import Counter
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

TRACES_PATH = "/v1/traces"


@dataclass(frozen=True)
class Stats:
    """What the sink has received; `roots` counts traces by the name of their root span."""

    requests: int = 0
    bytes: int = 0
    spans: int = 0
    traces: int = 0
    roots: dict[str, int] = field(default_factory=dict)

    def since(self, earlier: Stats) -> Stats:
        roots = {name: n - earlier.roots.get(name, 0) for name, n in self.roots.items()}
        return Stats(
            self.requests - earlier.requests,
            self.bytes - earlier.bytes,
            self.spans - earlier.spans,
            self.traces - earlier.traces,
            {name: n for name, n in roots.items() if n},
        )


class Counts:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests = self.bytes = self.spans = 0
        self.traces: set[bytes] = set()
        self.roots: Counter[str] = Counter()

    def add(self, body: bytes) -> None:
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        spans = [
            span
            for resource in request.resource_spans
            for scope in resource.scope_spans
            for span in scope.spans
        ]
        with self.lock:
            self.requests += 1
            self.bytes += len(body)
            self.spans += len(spans)
            self.traces.update(span.trace_id for span in spans)
            self.roots.update(span.name for span in spans if not span.parent_span_id)

    def snapshot(self) -> Stats:
        with self.lock:
            return Stats(self.requests, self.bytes, self.spans, len(self.traces), dict(self.roots))


def handler_for(counts: Counts) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the exporter's session expects

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.path != TRACES_PATH:
                self.reply(404, b"", "text/plain")
                return
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            counts.add(body)
            self.reply(200, ExportTraceServiceResponse().SerializeToString())

        def do_GET(self) -> None:
            if self.path != "/stats":
                self.reply(404, b"", "text/plain")
                return
            self.reply(200, json.dumps(asdict(counts.snapshot())).encode(), "application/json")

        def reply(self, status: int, body: bytes, kind: str = "application/x-protobuf") -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # one line per export would drown the bench's output

    return Handler


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(Counts()))
    print(server.server_address[1], flush=True)
    try:
        server.serve_forever()  # until the bench terminates this process
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
