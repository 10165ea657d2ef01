"""A small stand-in for Knative's broker, shared by the tests that drive Stratum's
functions as CloudEvents HTTP endpoints (in-process, or served from a container): it takes
events at its ingress (publishers and every function's K_SINK), delivers each to every
function whose Trigger takes its type (`accepts`, the same rule the manifests are checked
against), and routes a function's reply on as a new event; 5xx, 404, 408, 409 and 429 are
retried, as Knative's broker does."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import uvicorn
from starlette.requests import Request
from starlette.responses import Response

from stratum.bus.subjects import Subjects
from stratum.runtime.function import Function
from stratum.runtime.http_adapter import accepts
from tests.conftest import eventually

RETRIES = 5
# besides 5xx, what Knative's delivery retries
RETRIED = (404, 408, 409, 429)


async def serve_app(app: Any) -> tuple[uvicorn.Server, asyncio.Task[None], str]:
    """`app` on a loopback port the OS picks; the server, its task and its URL."""
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    )
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())
    await eventually(lambda: _started(server, task), timeout=10)
    port = server.servers[0].sockets[0].getsockname()[1]
    return server, task, f"http://127.0.0.1:{port}/"


async def _started(server: uvicorn.Server, task: asyncio.Task[None]) -> bool:
    assert not task.done(), "an endpoint could not start"
    return bool(server.started)


@dataclass(frozen=True)
class Routed:
    """An event the broker routed: its type, run (`ce-runid`) and id."""

    type: str
    runid: str | None
    id: str | None


@dataclass
class Broker:
    """Knative's broker, as far as Stratum can tell: ingress, Triggers, replies."""

    subjects: Subjects
    functions: Sequence[Function]  # what the Triggers filter on (declarations suffice)
    client: httpx.AsyncClient
    endpoints: dict[str, str] = field(default_factory=dict)  # function -> URL
    delivered: list[tuple[str, str, int]] = field(default_factory=list)  # function, type, status
    routed: list[Routed] = field(default_factory=list)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def ingress(self, request: Request) -> Response:
        headers = {k: v for k, v in request.headers.items() if k not in ("host", "content-length")}
        self.route(headers, await request.body())
        return Response(status_code=202)

    def route(self, headers: dict[str, str], body: bytes) -> None:
        kind = headers.get("ce-type")
        if kind is None:  # structured mode
            document = orjson.loads(body)
            kind, runid, ident = document["type"], document.get("runid"), document.get("id")
        else:
            runid, ident = headers.get("ce-runid"), headers.get("ce-id")
        self.routed.append(Routed(kind, runid, ident))
        for function in self.functions:
            if accepts(function, self.subjects, kind):
                task = asyncio.create_task(self._deliver(function.name, kind, headers, body))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _deliver(self, name: str, kind: str, headers: dict[str, str], body: bytes) -> None:
        for attempt in range(RETRIES):
            try:
                response = await self.client.post(
                    self.endpoints[name], content=body, headers=headers
                )
            except httpx.TransportError:  # an endpoint restarting: retried like a 5xx
                self.delivered.append((name, kind, 0))
                await asyncio.sleep(0.2 * 2**attempt)
                continue
            self.delivered.append((name, kind, response.status_code))
            if response.status_code == 200:  # the reply is the next event
                reply = {
                    k: v
                    for k, v in response.headers.items()
                    if k.startswith("ce-") or k in ("content-type", "traceparent", "tracestate")
                }
                self.route(reply, response.content)
            if response.status_code not in RETRIED and response.status_code < 500:
                return
            await asyncio.sleep(0.2 * 2**attempt)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


class NoAnnouncer:
    """For functions built only to read their subjects (what a Trigger filters on)."""

    def __init__(self, subjects: Subjects) -> None:
        self.subjects = subjects

    async def publish(self, event: Any) -> None:
        raise AssertionError("not for handling")

    async def publish_all(self, events: Any) -> None:
        raise AssertionError("not for handling")
