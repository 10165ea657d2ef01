"""What an authorization question carries besides the principal, and its answer."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict


class TriggerContext(BaseModel):
    """Cedar's `context` for `trigger`: where and when the event came, and what it says it
    is (the CloudEvents attributes; `data` stays out: it is the publisher's, unchecked)."""

    model_config = ConfigDict(frozen=True)

    subject: str
    time: datetime
    event_id: str
    event_type: str
    event_source: str


class SteerContext(BaseModel):
    """Cedar's `context` for an operator's action on a run (`cancel`): which run, who
    started it and where it stands, the reason given, and when it was asked. A policy
    can so tell a run's own publisher from anyone else (`context.run.actor`)."""

    model_config = ConfigDict(frozen=True)

    run_id: str
    run_actor: str
    run_status: str
    reason: str
    time: datetime


class Decision(BaseModel):
    """Allowed or not; the `@id`s of the policies that decided (the permits that allowed,
    or the forbids that denied; none when nothing permitted) and why, in words."""

    model_config = ConfigDict(frozen=True)

    allowed: bool
    policy_ids: list[str]
    reasons: list[str]

    @property
    def reason(self) -> str:
        """The reasons as one line, as a Denied run records them."""
        return "; ".join(self.reasons)
