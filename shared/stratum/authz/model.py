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
