"""HTTP routes to register, list and revoke publishers (public keys only).

POST /api/publishers {"name", "tenant", "public_key"}; GET /api/publishers[?tenant=];
DELETE /api/publishers/{name} (revoke). A change is applied to nats-server at once (the
publisher's NKey user appears or goes) through `on_change`.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

from pydantic import BaseModel, ValidationError, field_validator
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from stratum.clock import iso, utc_now
from stratum.store import PublisherRecord, RunStore, StoreError
from stratum.trust.signing import is_user_public_key

NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


class NewPublisher(BaseModel):
    name: str
    tenant: str
    public_key: str

    @field_validator("name", "tenant")
    @classmethod
    def _slug(cls, value: str) -> str:
        if not NAME.match(value):
            raise ValueError(f"{value!r} must match {NAME.pattern}")
        return value

    @field_validator("public_key")
    @classmethod
    def _user_key(cls, value: str) -> str:
        if not is_user_public_key(value):
            raise ValueError("must be the public NKey of a user (U..., 56 characters)")
        return value


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def publisher_routes(store: RunStore, on_change: Callable[[], Awaitable[None]]) -> list[Route]:
    async def create(request: Request) -> JSONResponse:
        try:
            new = NewPublisher.model_validate_json(await request.body())
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "body"
            return _error(400, f"{where}: {first['msg']}")
        record = PublisherRecord(**new.model_dump(), created_at=iso(utc_now()))
        try:
            await store.add_publisher(record)
        except StoreError as error:
            return _error(409, str(error).removeprefix("database error: "))
        await on_change()
        return JSONResponse(record.model_dump(), status_code=201)

    async def listing(request: Request) -> JSONResponse:
        tenant = request.query_params.get("tenant") or None
        rows = await store.publishers(tenant)
        return JSONResponse({"publishers": [r.model_dump() for r in rows]})

    async def revoke(request: Request) -> JSONResponse:
        name = request.path_params["name"]
        record = await store.revoke_publisher(name, iso(utc_now()))
        if record is None:
            return _error(404, f"unknown publisher {name}")
        await on_change()
        return JSONResponse(record.model_dump())

    return [
        Route("/api/publishers", create, methods=["POST"]),
        Route("/api/publishers", listing, methods=["GET"]),
        Route("/api/publishers/{name}", revoke, methods=["DELETE"]),
    ]
