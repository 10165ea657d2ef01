"""The event contract between the five functions (see docs/events.md).

Every message on the runs stream is a CloudEvents 1.0 structured-mode JSON document: an
`Envelope` whose `data` is one of the payload models below. Events are named in the past
tense; the commands (`ExecuteStage`, `CompensateRun`, `CancelRun`, `ResumeRun`) in the
imperative. The envelope's `type` is the payload's `TYPE`; the NATS subject is derived
from it (`stratum.bus.subjects`).
"""

from __future__ import annotations

import builtins
from datetime import datetime
from functools import cached_property
from typing import Any, ClassVar, Literal, TypeVar

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    model_serializer,
)

from stratum.errors import InvalidEventError
from stratum.ids import derived_event_id


class Payload(BaseModel):
    """Base of every event payload; `TYPE` is its CloudEvents `type`. Fields named in
    `OMITTED_WHEN_EMPTY` are left out of the JSON while empty, so adding one keeps the
    events that never use it as they were."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    TYPE: ClassVar[str]
    OMITTED_WHEN_EMPTY: ClassVar[tuple[str, ...]] = ()

    @model_serializer(mode="wrap")
    def _without_empty_extras(self, handler: SerializerFunctionWrapHandler) -> Any:
        dumped = handler(self)
        if isinstance(dumped, dict):
            for name in self.OMITTED_WHEN_EMPTY:
                if not dumped.get(name):
                    dumped.pop(name, None)
        return dumped


class RunAccepted(Payload):
    """A run starts. `rerun_of`: the run whose trigger event it runs again (`stratum
    rerun`; absent for a publisher's event)."""

    TYPE: ClassVar[str] = "stratum.run.accepted"
    OMITTED_WHEN_EMPTY: ClassVar[tuple[str, ...]] = ("rerun_of",)
    topic: str
    trigger_subject: str
    event_id: str
    event_type: str
    event_source: str
    actor: str
    event_data: Any
    inputs_hash: str
    rerun_of: str = ""


class RunDenied(Payload):
    """The trigger was refused before a run existed: the run is recorded Denied (finished,
    nothing ran). The audit event: who tried what, which policies decided (their `@id`s;
    empty when nothing permitted it, or when the publisher could not be verified) and why."""

    TYPE: ClassVar[str] = "stratum.run.denied"
    OMITTED_WHEN_EMPTY: ClassVar[tuple[str, ...]] = ("rerun_of",)
    topic: str
    trigger_subject: str
    event_id: str
    event_type: str
    event_source: str
    actor: str
    inputs_hash: str
    reason: str
    policy_ids: list[str]
    rerun_of: str = ""


class RunQueued(Payload):
    """The run waits: its tenant has `max_concurrent_runs` in progress (`in_progress` of
    `limit`), or earlier runs of the tenant wait before it (`ahead`). It is planned when a
    run of the tenant ends (`stratum.run.admitted`)."""

    TYPE: ClassVar[str] = "stratum.run.queued"
    reason: str
    limit: int
    in_progress: int
    ahead: int


class RunAdmitted(Payload):
    """A queued run got its turn: the planner plans it now (a command to the planner,
    emitted by the planner when a run of the tenant ended)."""

    TYPE: ClassVar[str] = "stratum.run.admitted"
    limit: int
    in_progress: int


class RunPlanned(Payload):
    TYPE: ClassVar[str] = "stratum.run.planned"
    graph_version: str
    stages: list[list[str]]


class RunRejected(Payload):
    """The run was accepted but cannot be planned (unknown topic, broken graph), or a
    message of it was given up on for a permanent error before it was (`runtime.ending`)."""

    TYPE: ClassVar[str] = "stratum.run.rejected"
    error: str


class ExecuteStage(Payload):
    TYPE: ClassVar[str] = "stratum.stage.execute"
    stage: int
    nodes: list[str]


class NodeStarted(Payload):
    TYPE: ClassVar[str] = "stratum.node.started"
    stage: int
    node: str


class NodeSucceeded(Payload):
    TYPE: ClassVar[str] = "stratum.node.succeeded"
    stage: int
    node: str
    attempts: int
    duration_ms: float
    outputs_hash: str | None = None
    bundle: str


class NodeFailed(Payload):
    TYPE: ClassVar[str] = "stratum.node.failed"
    stage: int
    node: str
    attempts: int
    duration_ms: float
    error: str
    cancelled: bool
    bundle: str | None = None


class StageCompleted(Payload):
    TYPE: ClassVar[str] = "stratum.stage.completed"
    stage: int
    nodes: list[str]


class StageFailed(Payload):
    TYPE: ClassVar[str] = "stratum.stage.failed"
    stage: int
    failed: list[str]
    error: str


class RunSucceeded(Payload):
    TYPE: ClassVar[str] = "stratum.run.succeeded"
    outputs_hash: str


class RunFailed(Payload):
    """A stage failed. `compensating`: a succeeded node has a compensate script, so
    `stratum.run.compensate` follows and the saga ends the run; false: nothing to undo,
    the run ends here, Failed (absent in older events = true). Also how a running run ends
    when a message of it was given up on for a permanent error (`runtime.ending`)."""

    TYPE: ClassVar[str] = "stratum.run.failed"
    stage: int
    error: str
    compensating: bool = True


class CompensateRun(Payload):
    TYPE: ClassVar[str] = "stratum.run.compensate"
    failed_stage: int


class CompensationRecorded(Payload):
    """One step of the saga's undo: a node's compensate script ran (or there was none)."""

    TYPE: ClassVar[str] = "stratum.compensation.recorded"
    order: int
    stage: int
    node: str
    status: Literal["succeeded", "failed", "skipped"]
    duration_ms: float
    error: str | None = None
    bundle: str | None = None
    # runs of the script in this step, per the node's retry policy (0 when skipped)
    attempts: int = 1


class RunCompensated(Payload):
    """The saga ended: the run is Compensated, or CompensationFailed if `failed` is not
    empty (those nodes' compensate scripts still failed after their retries)."""

    TYPE: ClassVar[str] = "stratum.run.compensated"
    compensated: list[str]
    failed: list[str]


class CancelRun(Payload):
    """An operator's request to cancel the run, authorized already (the API asked Cedar:
    `policy_ids` are the permits that allowed it). A command to the planner, which
    decides what it does to the run as it stands then."""

    TYPE: ClassVar[str] = "stratum.run.cancel"
    actor: str
    reason: str
    policy_ids: list[str]


class RunCancelling(Payload):
    """The run was asked to stop (by `actor`, for `reason`): nothing more is dispatched;
    the stage executor running its stage kills the stage's scripts and hands what
    succeeded to the saga (`stratum.run.compensate`), or ends the run Cancelled."""

    TYPE: ClassVar[str] = "stratum.run.cancelling"
    actor: str
    reason: str
    policy_ids: list[str]


class RunCancelled(Payload):
    """A cancelled run ended: Cancelled once what it had done is undone (`compensated`,
    in the saga's order; empty when nothing had run or nothing could be undone), or
    CompensationFailed if `failed` is not empty."""

    TYPE: ClassVar[str] = "stratum.run.cancelled"
    actor: str
    reason: str
    compensated: list[str] = []
    failed: list[str] = []


class RunHeld(Payload):
    """A stage failed and a node that failed declares `on_failure = "hold"`: the run waits
    for an operator, nothing undone (its succeeded nodes and their capabilities are kept).
    `stratum resume` runs it again from this stage; `stratum cancel` undoes it."""

    TYPE: ClassVar[str] = "stratum.run.held"
    stage: int
    failed: list[str]
    error: str


class ResumeRun(Payload):
    """An operator's request to run a Held run again from the stage that failed,
    authorized already (`policy_ids`: the permits that allowed it). A command to the
    planner, which re-plans the run with the definitions in force."""

    TYPE: ClassVar[str] = "stratum.run.resume"
    actor: str
    reason: str
    policy_ids: list[str]


class RunResumed(Payload):
    """A Held run runs again: its `resumption`-th resume (1 for the first), planned anew
    with `graph_version` (`stages`), from `from_stage`, the first stage with a node that
    has not succeeded. Every event of the run from here on carries `resumption` in its
    envelope, so a read model tells the new attempt's events from the old ones."""

    TYPE: ClassVar[str] = "stratum.run.resumed"
    actor: str
    reason: str
    policy_ids: list[str]
    resumption: int
    graph_version: str
    stages: list[list[str]]
    from_stage: int


class RunRerun(Payload):
    """The run's trigger event was run again as the run `rerun` (a new run id, authorized
    again: `status` Accepted, or Denied by today's policies), at `actor`'s request."""

    TYPE: ClassVar[str] = "stratum.run.rerun"
    rerun: str
    status: str
    actor: str
    reason: str
    policy_ids: list[str]


PAYLOADS: dict[str, type[Payload]] = {
    cls.TYPE: cls
    for cls in (
        RunAccepted,
        RunDenied,
        RunQueued,
        RunAdmitted,
        RunPlanned,
        RunRejected,
        ExecuteStage,
        NodeStarted,
        NodeSucceeded,
        NodeFailed,
        StageCompleted,
        StageFailed,
        RunSucceeded,
        RunFailed,
        CompensateRun,
        CompensationRecorded,
        RunCompensated,
        CancelRun,
        RunCancelling,
        RunCancelled,
        RunHeld,
        ResumeRun,
        RunResumed,
        RunRerun,
    )
}

P = TypeVar("P", bound=Payload)


def json_object(body: bytes) -> dict[str, Any]:
    """The JSON object a structured-mode CloudEvent body holds; InvalidEventError saying
    what is wrong with it otherwise."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise InvalidEventError(f"body is not JSON: {error}") from None
    if not isinstance(document, dict):
        raise InvalidEventError("body must be a CloudEvents JSON object")
    return document


class Envelope(BaseModel):
    """A CloudEvents 1.0 event as Stratum's functions exchange it.

    `tenant` and `runid` are CloudEvents extension attributes; `subject` repeats the run id
    so generic CloudEvents tooling can group by it. `resumption` (an extension too, left
    out while 0) is how many times the run had been resumed when the event was emitted: an
    event inherits it from its cause, and `stratum.run.resumed` starts the next.
    """

    model_config = ConfigDict(frozen=True)

    specversion: Literal["1.0"] = "1.0"
    id: str
    source: str
    type: str
    time: datetime
    subject: str
    datacontenttype: Literal["application/json"] = "application/json"
    tenant: str
    runid: str
    resumption: int = Field(default=0, ge=0)
    data: dict[str, Any]

    @model_serializer(mode="wrap")
    def _without_first_resumption(self, handler: SerializerFunctionWrapHandler) -> Any:
        """Events of a run never resumed keep the shape they always had."""
        dumped = handler(self)
        if isinstance(dumped, dict) and not dumped.get("resumption"):
            dumped.pop("resumption", None)
        return dumped

    def payload(self, kind: builtins.type[P]) -> P:
        """The typed payload; InvalidEventError if the type or the data do not match."""
        if self.type != kind.TYPE:
            raise InvalidEventError(f"event {self.id}: expected type {kind.TYPE}, got {self.type}")
        try:
            return kind.model_validate(self.data)
        except ValidationError as error:
            raise InvalidEventError(
                f"event {self.id} ({self.type}): {_first_error(error)}"
            ) from None

    @cached_property
    def body(self) -> bytes:
        """The event as JSON: what is published and what the outbox stores, encoded once."""
        return orjson.dumps(self.model_dump(mode="json"))

    def to_bytes(self) -> bytes:
        return self.body

    @classmethod
    def from_bytes(cls, body: bytes) -> Envelope:
        try:
            return cls.model_validate_json(body)
        except ValidationError as error:
            raise InvalidEventError(f"not a Stratum event: {_first_error(error)}") from None


def emit(
    payload: Payload,
    *,
    cause: Envelope | str,
    run_id: str,
    tenant: str,
    source: str,
    now: datetime,
    discriminator: str = "",
    resumption: int | None = None,
) -> Envelope:
    """Build the envelope for `payload`, with an id derived from what caused it, in the
    run's `resumption` (by default its cause's: 0 for a request)."""
    cause_id = cause if isinstance(cause, str) else cause.id
    if resumption is None:
        resumption = 0 if isinstance(cause, str) else cause.resumption
    return Envelope(
        id=derived_event_id(cause_id, payload.TYPE, discriminator),
        source=source,
        type=payload.TYPE,
        time=now,
        subject=run_id,
        tenant=tenant,
        runid=run_id,
        resumption=resumption,
        data=payload.model_dump(mode="json"),
    )


def follow(
    payload: Payload,
    cause: Envelope,
    *,
    source: str,
    now: datetime,
    discriminator: str = "",
    resumption: int | None = None,
) -> Envelope:
    """An event of the same run as `cause`, emitted because of it (in its resumption
    unless told otherwise)."""
    return emit(
        payload,
        cause=cause,
        run_id=cause.runid,
        tenant=cause.tenant,
        source=source,
        now=now,
        discriminator=discriminator,
        resumption=resumption,
    )


def _first_error(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "event"
    return f"{where}: {first['msg']}"
