"""The policies in force. A reload that fails keeps the previous set live and remembers
the error (as the graph does); with no valid set at all, every trigger is denied."""

from __future__ import annotations

import logging
from pathlib import Path

from stratum.authz.decide import decide, decide_steer
from stratum.authz.loader import Policies, load_policies
from stratum.authz.model import Decision, SteerContext, TriggerContext
from stratum.errors import PolicyError
from stratum.telemetry import metrics
from stratum.telemetry.health import LoadState, LoadTracker
from stratum.trust.principal import Principal

log = logging.getLogger("stratum.authz")


class PolicyRegistry:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.current: Policies | None = None
        self._load = LoadTracker(metrics.POLICIES_DEGRADED, metrics.POLICIES_LOADED)

    def reload(self) -> bool:
        """Load the folder; True if a new policy set is now current."""
        try:
            policies = load_policies(self.folder)
        except PolicyError as error:
            self._load.failed(str(error))
            log.error(
                "policy reload failed; keeping the previous policies", extra={"error": self.error}
            )
            return False
        was_broken = self._load.succeeded()
        changed = self.current is None or policies.version != self.current.version
        self.current = policies
        if changed:
            log.info(
                "policies loaded",
                extra={"version": policies.version, "policies": len(policies.places)},
            )
        elif was_broken:
            log.info("policies valid again, unchanged", extra={"version": policies.version})
        return changed

    @property
    def error(self) -> str | None:
        """Why the last reload failed, while no reload has succeeded since."""
        return self._load.error

    def health(self) -> LoadState:
        """The policies in force, and whether (since when, why) a reload left them degraded."""
        return self._load.state(self.current.version if self.current else None)

    def decide(
        self, principal: Principal, tenant: str, topic: str, context: TriggerContext
    ) -> Decision:
        """The current policies' decision; denied when no valid set was ever loaded."""
        if self.current is None:
            return self._none_loaded()
        return decide(self.current, principal, tenant, topic, context)

    def decide_steer(
        self, principal: Principal, action: str, tenant: str, topic: str, context: SteerContext
    ) -> Decision:
        """The current policies' decision on an action on a run (`cancel`); denied when no
        valid set was ever loaded."""
        if self.current is None:
            return self._none_loaded()
        return decide_steer(self.current, principal, action, tenant, topic, context)

    def _none_loaded(self) -> Decision:
        why = f"no valid policies are loaded: {(self.error or 'never loaded').splitlines()[0]}"
        return Decision(allowed=False, policy_ids=[], reasons=[why])
