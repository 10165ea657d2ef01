"""A thin async wrapper over the SurrealDB SDK: connect, run queries, translate errors.

Embedded (`surrealkv://DIR`, `mem://`) and server (`ws://`, `http://`) URLs go through the
same SDK calls, so the code path is identical; only the URL differs.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import random
import re
from collections.abc import Iterable
from typing import Any

from stratum.errors import (
    ConflictError,
    DependencyUnavailableError,
    RetryableError,
    StratumError,
)
from stratum.keyed_lock import KeyedLocks
from stratum.store import codec
from stratum.telemetry import tracing
from stratum.telemetry.metrics import DB_TRANSACTIONS

STALE_MARKER = "stratum:stale"
AT_LIMIT_MARKER = "stratum:at-limit"
CANCELLING_MARKER = "stratum:cancelling"
CONFLICT_RETRIES = 8
NOT_EXECUTED = "not executed due to a failed transaction"
# a statement that changes something: a round trip with one is a write
WRITE_STATEMENT = re.compile(r"\b(?:CREATE|UPSERT|UPDATE|DELETE|INSERT|RELATE|DEFINE|REMOVE)\b")
# bound once: counting a round trip is one increment, no label lookup
_ROUND_TRIPS = {kind: DB_TRANSACTIONS.labels(kind) for kind in ("write", "read")}


@functools.lru_cache(maxsize=1024)  # the queries are a few hundred constant texts
def query_kind(sql: str) -> str:
    """`write` if `sql` has a statement that changes something, else `read` (the `kind`
    of stratum_db_transactions_total)."""
    return "write" if WRITE_STATEMENT.search(sql) else "read"


class StoreError(StratumError):
    """A query failed for a reason retrying will not fix."""


class StaleWriteError(StratumError):
    """A conditional write found the record already past the expected state: the message
    that asked for it was handled before (a redelivery) or is out of date."""


class AtLimitError(StratumError):
    """A write that admits a run found its tenant at its concurrent-run limit (or earlier
    runs of it waiting): nothing was written; the run must wait its turn."""


class CancellingError(StratumError):
    """A write that moves a run on found it Cancelling: nothing was written; the caller
    stops the run instead (`stratum.run.cancelling`). Handled where it can arise; one
    that escapes is delivered again at once, and stops the run then."""

    retryable = True


class Database:
    """One SurrealDB connection shared by every function in a process."""

    def __init__(self, connection: Any, url: str) -> None:
        self._connection = connection
        self.url = url
        self._writers = KeyedLocks()

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        namespace: str,
        database: str,
        user: str = "",
        password: str = "",
        durable_writes: bool = True,
    ) -> Database:
        """Connect (creating the embedded store if needed); fails fast naming the URL."""
        if durable_writes and url.startswith(("surrealkv://", "rocksdb://", "file://")):
            # the embedded engine reads this when it opens: fsync on every commit
            os.environ.setdefault("SURREAL_SYNC_DATA", "true")
        from surrealdb import AsyncSurreal

        codec.install()  # the SDK's CBOR, written and read by cbor2's C extension

        try:
            connection = AsyncSurreal(url)
            await connection.connect(url)
            if user:
                await connection.signin({"username": user, "password": password})
            await connection.use(namespace, database)
        except Exception as error:  # the SDK raises many kinds; all mean "not reachable"
            raise DependencyUnavailableError(
                f"SurrealDB at {url} is not reachable: {type(error).__name__}: {error}"
            ) from None
        return cls(connection, url)

    async def query(self, sql: str, variables: dict[str, Any] | None = None) -> list[Any]:
        """Run `sql` (one or more statements); the result of each statement, in order.

        Write conflicts between concurrent transactions are expected under snapshot
        isolation; they are retried here a few times before the caller sees them. Every
        attempt is a round trip, counted as one by its kind.
        """
        round_trips = _ROUND_TRIPS[query_kind(sql)]
        for attempt in range(CONFLICT_RETRIES):
            round_trips.inc()
            try:
                return await self._query_once(sql, variables)
            except RetryableError:
                if attempt == CONFLICT_RETRIES - 1:
                    raise
                await asyncio.sleep(random.uniform(0.001, 0.005) * (attempt + 1))
        raise AssertionError("unreachable")

    async def _query_once(self, sql: str, variables: dict[str, Any] | None) -> list[Any]:
        try:
            response = await self._connection.query_raw(sql, variables or {})
        except Exception as error:
            raise _translate(str(error)) from None
        if "error" in response:
            raise _translate(str(response["error"]))
        statements = response.get("result", [])
        errors = [str(s.get("result")) for s in statements if s.get("status") != "OK"]
        if errors:
            # in a failed transaction every statement reports "not executed"; the cause
            # (a THROW, a unique index, a conflict) is the one error that says otherwise
            causes = [e for e in errors if NOT_EXECUTED not in e]
            raise _translate(causes[0] if causes else errors[0])
        return [statement.get("result") for statement in statements]

    async def transaction(
        self, sql: str, variables: dict[str, Any] | None = None, *, keys: Iterable[str] = ()
    ) -> list[Any]:
        """Run `sql` atomically: all statements commit together or none do.

        `keys` name what the transaction reads to decide what it writes (a run, a view).
        Transactions sharing a key run one after the other in this process: the embedded
        engine does not reliably fail the second of two concurrent read-check-write
        transactions on one record (measured: 50 concurrent compare-and-set writers lost
        2-5 updates), so a conditional write must not rely on it alone.
        """
        async with self._writers.hold_all(keys):
            with tracing.span(
                "surrealdb transaction",
                {"db.system.name": "surrealdb", "db.operation.name": "transaction"},
            ):
                return await self.query(
                    f"BEGIN TRANSACTION;\n{sql}\nCOMMIT TRANSACTION;", variables
                )

    async def close(self) -> None:
        # closing a broken connection has nothing left to report
        with contextlib.suppress(Exception):
            await self._connection.close()


def _translate(message: str) -> StratumError:
    if STALE_MARKER in message:
        return StaleWriteError(message)
    if AT_LIMIT_MARKER in message:
        return AtLimitError(message)
    if CANCELLING_MARKER in message:
        return CancellingError(message)
    if "can be retried" in message or "conflict" in message.lower():
        return ConflictError(f"database write conflict: {message}")
    if NOT_EXECUTED in message:
        return RetryableError(f"database transaction failed: {message}")
    return StoreError(f"database error: {message}")
