"""A cancel as the functions that carry it out read it: who asked, and why."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class CancelOrder:
    actor: str
    reason: str

    @property
    def error(self) -> str:
        """How a cancelled run, its stopped stage and its killed nodes say why."""
        return f"cancelled by {self.actor}" + (f": {self.reason}" if self.reason else "")

    @classmethod
    def of(cls, record: Mapping[str, Any] | None) -> CancelOrder | None:
        """The order a run's `cancel` record (or a `run.cancelling` payload) holds."""
        if not record:
            return None
        return cls(actor=str(record.get("actor") or "?"), reason=str(record.get("reason") or ""))
