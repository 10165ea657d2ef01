"""Per-tenant limits, as configured (`tenant_limits` in the startup config).

    tenant_limits = {
      default = { max_concurrent_runs = 50, events_per_second = 100 },
      acme = { max_concurrent_runs = 5 },   # events_per_second: the default's
    }

`default` applies to every tenant not named and fills the fields a named tenant leaves
out; a field nobody sets takes the built-in value below. 0 means no limit. The planner
holds runs beyond `max_concurrent_runs` queued; ingest makes events beyond
`events_per_second` wait (see docs/architecture.md, "Tenants").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, RootModel, field_validator, model_validator

from stratum.bus.subjects import TENANT_PATTERN

DEFAULT_KEY = "default"
BUILT_IN_MAX_CONCURRENT_RUNS = 50
BUILT_IN_EVENTS_PER_SECOND = 100.0


@dataclass(frozen=True)
class Limits:
    """One tenant's limits in force; 0 means no limit."""

    max_concurrent_runs: int = BUILT_IN_MAX_CONCURRENT_RUNS
    events_per_second: float = BUILT_IN_EVENTS_PER_SECOND


class TenantLimit(BaseModel):
    """One entry of `tenant_limits`: a field left out comes from `default`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_concurrent_runs: int | None = Field(default=None, ge=0)
    events_per_second: float | None = Field(default=None, ge=0)


class TenantLimits(RootModel[dict[str, TenantLimit]]):
    """Limits by tenant name (plus `default`). From Nickel, or as JSON in
    `STRATUM_TENANT_LIMITS`."""

    model_config = ConfigDict(frozen=True)

    root: dict[str, TenantLimit] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _json_text(cls, value: Any) -> Any:
        return orjson.loads(value) if isinstance(value, str | bytes) else value

    @field_validator("root")
    @classmethod
    def _tenant_names(cls, value: dict[str, TenantLimit]) -> dict[str, TenantLimit]:
        wrong = [name for name in value if name != DEFAULT_KEY and not TENANT_PATTERN.match(name)]
        if wrong:
            raise ValueError(
                f"{', '.join(sorted(wrong))}: not a tenant name ({TENANT_PATTERN.pattern}) "
                f"nor {DEFAULT_KEY!r}"
            )
        return value

    def of(self, tenant: str) -> Limits:
        """The limits `tenant` is held to."""
        named = self.root.get(tenant) or TenantLimit()
        default = self.root.get(DEFAULT_KEY) or TenantLimit()
        runs = _first(named.max_concurrent_runs, default.max_concurrent_runs)
        rate = _first(named.events_per_second, default.events_per_second)
        return Limits(
            max_concurrent_runs=BUILT_IN_MAX_CONCURRENT_RUNS if runs is None else int(runs),
            events_per_second=BUILT_IN_EVENTS_PER_SECOND if rate is None else float(rate),
        )


def _first(*values: float | None) -> float | None:
    return next((value for value in values if value is not None), None)
