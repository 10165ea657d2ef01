"""Who triggered a run, as the three auth planes see it."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict


class Principal(BaseModel):
    """The identity an event was published by.

    `publisher`: a registered publisher whose NKey signature over the event verified (its
    name, its tenant, its public key). `source`: signatures are not required (a local
    development set-up), so the CloudEvents `source` (or the API's `Stratum-Caller`) is all
    that is known — unverified. `operator`: the API's operator key signed the request; it
    belongs to no tenant (`tenant` is empty) and steers every run.
    """

    model_config = ConfigDict(frozen=True)

    kind: Literal["publisher", "source", "operator"]
    name: str
    tenant: str
    public_key: str | None = None

    @property
    def actor(self) -> str:
        """How runs and the audit trail name it: `publisher:ci-bot`, `source:tests`, and
        `operator` (there is one)."""
        return "operator" if self.kind == "operator" else f"{self.kind}:{self.name}"
