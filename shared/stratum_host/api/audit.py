"""GET /api/audit[?tenant=&since=]: the audit trail as hash-chained NDJSON.

The chain is computed here, by the server, as the records stream out of the database in
(timestamp, run id) order: whatever fetches it (`stratum audit export`, curl) gets the
same verifiable bytes, and the client only writes them down. `tenant` filters in the
query itself; `since` (ISO 8601, UTC when no offset) keeps runs created at or after it.
The chain starts from its genesis value in every export.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from stratum.bus.subjects import TENANT_PATTERN
from stratum.clock import iso
from stratum.store import RunStore
from stratum.trust.audit_chain import ChainWriter

NDJSON = "application/x-ndjson"
# lines are sent in chunks of about this size, not one write each
CHUNK_BYTES = 64 * 1024


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def parse_since(text: str) -> str:
    """`since` in the database's time format; ValueError says what is wrong."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"since {text!r} is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return iso(moment)


def audit_routes(store: RunStore) -> list[Route]:
    async def export(request: Request) -> Response:
        tenant = request.query_params.get("tenant") or None
        if tenant is not None and not TENANT_PATTERN.match(tenant):
            return _error(400, f"tenant {tenant!r} must match {TENANT_PATTERN.pattern}")
        since = request.query_params.get("since") or None
        try:
            since = parse_since(since) if since else None
        except ValueError as error:
            return _error(400, str(error))

        async def lines() -> AsyncIterator[bytes]:
            writer, chunk = ChainWriter(), bytearray()
            async for record in store.audit_records(tenant=tenant, since=since):
                chunk += writer.line(record.model_dump(mode="json"))
                if len(chunk) >= CHUNK_BYTES:
                    yield bytes(chunk)
                    chunk.clear()
            yield bytes(chunk)

        return StreamingResponse(lines(), media_type=NDJSON)

    return [Route("/api/audit", export)]
