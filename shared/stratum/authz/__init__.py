"""The workflow plane's authorization: Cedar policies decide who may trigger what, and
who may cancel which runs.

`load_policies` / `check_policies` read a policy folder; `decide` is pure; the
`PolicyRegistry` keeps the set in force across reloads. The entity model (who is a
principal, what is a resource) is in `stratum.authz.entities`.
"""

from stratum.authz.decide import decide, decide_steer
from stratum.authz.loader import Policies, check_policies, load_policies
from stratum.authz.model import Decision, SteerContext, TriggerContext
from stratum.authz.registry import PolicyRegistry

__all__ = [
    "Decision",
    "Policies",
    "PolicyRegistry",
    "SteerContext",
    "TriggerContext",
    "check_policies",
    "decide",
    "decide_steer",
    "load_policies",
]
