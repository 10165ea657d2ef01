"""Dead letters in SurrealDB: the messages a function gave up on, kept whole enough to be
re-driven (the `dead_letter` table is the record; the dead-letter stream only announces),
and the end of a run whose message was given up on for good."""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from stratum.events import Envelope
from stratum.runs.status import RunStatus
from stratum.store.database import Database
from stratum.store.guarded import GuardedWrites
from stratum.store.read_models import plain_record

# header names whose values are never stored (nor re-published): credentials, if any ride along
SECRET_HEADER = re.compile(r"secret|token|authori[sz]ation|password|cookie|api[-_]?key", re.I)
# NATS's default max payload: anything a default server delivered is kept whole, re-drivable
MAX_BODY_BYTES = 1024 * 1024
MAX_ERROR_CHARS = 2000


class DeadLetterSummary(BaseModel):
    """A message a function terminated instead of handling: where it was, and why."""

    model_config = ConfigDict(frozen=True)

    id: str
    function: str
    stream: str
    stream_sequence: int
    subject: str
    # as they arrived, minus the values of secret-looking headers (named in `redacted`)
    headers: dict[str, str]
    redacted: list[str] = []
    body_encoding: Literal["utf-8", "base64"]
    body_bytes: int
    body_truncated: bool
    error: str
    # True: not a valid event, terminated at once
    invalid: bool
    # True: retrying could not help (invalid, refused, or an error whose type says so),
    # terminated at its first failure; False: every allowed delivery failed
    permanent: bool = False
    deliveries: int
    # when the message entered the stream, and when it was given up on
    first_at: str
    last_at: str
    redriven: int = 0
    redriven_at: str | None = None


class DeadLetter(DeadLetterSummary):
    """A dead letter with its body (text, or base64 when it is not UTF-8)."""

    body: str

    @classmethod
    def of(
        cls,
        *,
        ident: str,
        function: str,
        stream: str,
        stream_sequence: int,
        subject: str,
        headers: dict[str, str],
        body: bytes,
        error: str,
        invalid: bool,
        deliveries: int,
        first_at: str,
        last_at: str,
        permanent: bool = False,
    ) -> DeadLetter:
        """The record of a message as it arrived, secrets left out and the body capped."""
        kept = body[:MAX_BODY_BYTES]
        encoding: Literal["utf-8", "base64"] = "utf-8"
        try:
            text = kept.decode()
        except UnicodeDecodeError:
            text, encoding = base64.b64encode(kept).decode(), "base64"
        return cls(
            id=ident,
            function=function,
            stream=stream,
            stream_sequence=stream_sequence,
            subject=subject,
            headers={k: v for k, v in headers.items() if not SECRET_HEADER.search(k)},
            redacted=sorted(k for k in headers if SECRET_HEADER.search(k)),
            body=text,
            body_encoding=encoding,
            body_bytes=len(body),
            body_truncated=len(kept) < len(body),
            error=error[:MAX_ERROR_CHARS],
            invalid=invalid,
            permanent=permanent or invalid,
            deliveries=deliveries,
            first_at=first_at,
            last_at=last_at,
        )

    @property
    def redrivable(self) -> bool:
        """Only a body stored whole can be published again."""
        return not self.body_truncated

    def raw_body(self) -> bytes:
        if self.body_encoding == "base64":
            return base64.b64decode(self.body)
        return self.body.encode()


class DeadLetters(GuardedWrites):
    """Reads and writes of `dead_letter`, and ending a run given up on (mixed into
    RunStore)."""

    db: Database

    async def record_dead_letter(self, letter: DeadLetter) -> None:
        """Store `letter`; a repeat of the same give-up (same id) changes nothing, so a
        re-drive count is never reset."""
        await self.db.query(
            "INSERT IGNORE INTO dead_letter $letter RETURN NONE;",
            {"letter": letter.model_dump(mode="json")},
        )

    async def end_given_up_run(
        self,
        run_id: str,
        *,
        seen: str,
        stage: int | None,
        ending: RunStatus,
        error: str | None,
        failed: Sequence[str],
        events: Sequence[Envelope],
        cause: str,
    ) -> None:
        """End a run whose message was given up on for good (`stratum.runtime.ending`),
        only if it is as it was seen (`seen` status, at `stage`): Failed with `error`, or
        its saga ended naming the steps not undone (`failed`). With its events, in one
        guarded write; StaleWriteError if the run moved meanwhile."""
        if ending is RunStatus.FAILED:
            assignments = "status = $status, error = $error, finished_at = $now"
        else:
            assignments = "status = $status, failed_compensations = $failed, finished_at = $now"
            if error is not None:  # a cancelled run: who cancelled it
                assignments += ", error = $error"
        await self._guarded(
            run_id,
            condition="status = $seen AND current_stage = $stage",
            assignments=assignments,
            what=f"run {run_id} moved since it was given up on",
            events=events,
            cause=cause,
            variables={
                "seen": seen,
                "stage": stage,
                "status": ending.value,
                "error": error,
                "failed": list(failed),
            },
        )

    async def dead_letters(self, limit: int = 50) -> list[DeadLetterSummary]:
        """Newest first, without their bodies (up to 1 MiB each)."""
        rows = (
            await self.db.query(
                "SELECT * OMIT body FROM dead_letter ORDER BY last_at DESC LIMIT $limit;",
                {"limit": limit},
            )
        )[0]
        return [DeadLetterSummary.model_validate(_plain(row)) for row in rows]

    async def get_dead_letter(self, letter_id: str) -> DeadLetter | None:
        rows = (
            await self.db.query("SELECT * FROM type::thing('dead_letter', $id);", {"id": letter_id})
        )[0]
        return DeadLetter.model_validate(_plain(rows[0])) if rows else None

    async def mark_redriven(self, letter_id: str, now: str) -> DeadLetter | None:
        """Count one more re-drive; None if there is no such dead letter."""
        rows = (
            await self.db.query(
                "UPDATE type::thing('dead_letter', $id) SET redriven += 1, redriven_at = $now "
                "RETURN AFTER;",
                {"id": letter_id, "now": now},
            )
        )[0]
        return DeadLetter.model_validate(_plain(rows[0])) if rows else None


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    record = plain_record(row)
    record["id"] = record.pop("_id")
    return record
