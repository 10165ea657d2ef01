"""Health: what a process serves, and whether a reload left it degraded.

A reload of the workflow definitions (or the policies) that fails keeps the previous
version live. That is right for the runs, but a monitor must be able to tell: the process
stays *live* (a probe must not restart it because someone saved a bad file) and *ready*
(it serves the previous version), and says it is *degraded* — with the error, since when,
and the version still in force — until a reload succeeds. `/healthz` of `stratum up` and
of every Knative endpoint, `stratum top`, and the `stratum_*_degraded` gauges all report
this one state (see docs/architecture.md, "Health").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from prometheus_client import Gauge
from pydantic import BaseModel, ConfigDict

from stratum.clock import iso, utc_now

OK = "ok"
DEGRADED = "degraded"


class LoadState(BaseModel):
    """One reloadable set (the definitions, the policies) as health reports it."""

    model_config = ConfigDict(frozen=True)

    degraded: bool  # a reload error is pending, or nothing was ever loaded
    version: str | None = None  # the version in force; None: none was ever loaded
    error: str | None = None  # why the last reload failed, until one succeeds
    since: str | None = None  # when the first failing reload after the last good one failed
    loaded_at: str | None = None  # when a load last succeeded


class LoadTracker:
    """The last good load and the failure pending since, kept in two gauges as well (so an
    alert can fire on them): `degraded` 0/1 and `loaded` the time of the last good load."""

    def __init__(
        self, degraded: Gauge, loaded: Gauge, now: Callable[[], datetime] = utc_now
    ) -> None:
        self._degraded = degraded
        self._loaded = loaded
        self._now = now
        self.error: str | None = None
        self.since: datetime | None = None
        self.loaded_at: datetime | None = None

    def succeeded(self) -> bool:
        """A load succeeded; True if it cleared a pending error."""
        was_broken = self.error is not None
        self.error, self.since, self.loaded_at = None, None, self._now()
        self._degraded.set(0)
        self._loaded.set(self.loaded_at.timestamp())
        return was_broken

    def failed(self, error: str) -> None:
        """A load failed: `error` is the latest reason, `since` stays the streak's start."""
        self.error = error
        self.since = self.since or self._now()
        self._degraded.set(1)

    def state(self, version: str | None) -> LoadState:
        """The state with `version` in force."""
        return LoadState(
            degraded=self.error is not None or version is None,
            version=version,
            error=self.error,
            since=iso(self.since) if self.since else None,
            loaded_at=iso(self.loaded_at) if self.loaded_at else None,
        )


def health_body(parts: Mapping[str, LoadState], **extra: Any) -> dict[str, Any]:
    """A `/healthz` answer: `status` "degraded" if any part is, each part by name, and
    `extra` fields."""
    degraded = any(part.degraded for part in parts.values())
    body: dict[str, Any] = {"status": DEGRADED if degraded else OK, **extra}
    return body | {name: part.model_dump() for name, part in parts.items()}


def unready(parts: Mapping[str, LoadState]) -> str | None:
    """What keeps a process from serving (None: ready). Degraded is still ready: the
    previous version serves, and taking the process out of rotation for a typo in a new
    file would stop every new run."""
    for name, part in parts.items():
        if part.version is None:
            return f"no valid {name}: {part.error or 'none loaded'}"
    return None
