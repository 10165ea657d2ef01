"""Who is calling the HTTP API, and which tenant's data it may see.

With signatures required, every `/api/` request is signed like an event (`stratum.trust.signing`,
the request line in place of the subject: `"<METHOD> <path>?<query>"`). The operator —
whoever holds Stratum's own `stratum` seed under `<data_dir>/nkeys/`, as the local CLI
does — sees every tenant. A registered publisher sees its own tenant only: the request's
`tenant` parameter is set to its tenant whatever it asked for, so every query filters in
the database (another tenant's run is simply not found), and operator-only routes
(replay, dead letters, managing publishers) answer 403. `/healthz`, `/readyz` and
`/metrics` stay open (they are outside `/api/`). The verified caller is kept in the
request's state (`request.state.caller`) for routes that ask Cedar about it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from stratum.errors import UnverifiedEventError
from stratum.store import PublisherRecord, RunStore
from stratum.trust.publisher_auth import claimed_key, verify_publisher


@dataclass(frozen=True)
class Caller:
    name: str
    tenant: str | None  # None: the operator, every tenant


def request_target(method: str, path: bytes, query: bytes) -> str:
    """What a request signature covers besides time and body."""
    line = path + (b"?" + query if query else b"")
    return f"{method} {line.decode('latin-1')}"


def operator_only(method: str, path: str) -> bool:
    return (
        path.startswith("/api/replay")
        or path.startswith("/api/dead-letters")
        or (path.startswith("/api/publishers") and method != "GET")
    )


class SignedRequests:
    """ASGI middleware enforcing the rules in the module docstring."""

    def __init__(
        self, app: ASGIApp, store: RunStore, operator_key: str, window_seconds: float
    ) -> None:
        self.app = app
        self.store = store
        self.operator_key = operator_key
        self.window_seconds = window_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/api/"):
            await self.app(scope, receive, send)
            return
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        headers = {k.decode("latin-1").title(): v.decode("latin-1") for k, v in scope["headers"]}
        target = request_target(scope["method"], scope["raw_path"], scope["query_string"])
        try:
            caller = await self._caller(headers, target, body)
        except UnverifiedEventError as error:
            await _reply(send, 401, str(error))
            return
        if caller.tenant is not None:
            if operator_only(scope["method"], scope["path"]):
                await _reply(send, 403, f"{caller.name} may not do this: operator only")
                return
            query = [(k, v) for k, v in parse_qsl(scope["query_string"].decode()) if k != "tenant"]
            scope = dict(
                scope, query_string=urlencode([*query, ("tenant", caller.tenant)]).encode()
            )
        # who asked, for the routes that decide by it (steering runs: `api.steering`)
        scope = dict(scope, state={**scope.get("state", {}), "caller": caller})

        replayed = False

        async def replay() -> Message:
            """The body once, then the real channel (a streaming response listens on it
            for the client's disconnect: answering it again and again would spin)."""
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _caller(self, headers: dict[str, str], target: str, body: bytes) -> Caller:
        key = claimed_key(headers)
        operator = key is not None and key == self.operator_key
        record = (
            PublisherRecord(
                name="operator", tenant="*", public_key=self.operator_key, created_at=""
            )
            if operator
            else await self.store.publisher_by_key(key)
            if key
            else None
        )
        principal = verify_publisher(
            headers,
            target,
            body,
            record.tenant if record else "",
            record,
            now_ms=int(time.time() * 1000),
            window_seconds=self.window_seconds,
            what="request",
        )
        return Caller(name=principal.name, tenant=None if operator else principal.tenant)


async def _reply(send: Send, status: int, message: str) -> None:
    body = orjson.dumps({"error": message})
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})
