"""May this principal trigger this topic of this tenant, or cancel a run of it? Pure:
the loaded policies in, a Decision out, nothing else read or written.

Cedar's semantics: a forbid that applies wins over any permit, and nothing is allowed
unless some permit applies (default deny). A policy whose evaluation errors is skipped by
Cedar; its error is kept among the reasons, so an audit record shows it.
"""

from __future__ import annotations

import json
from typing import Any

import cedarpy

from stratum.authz import entities
from stratum.authz.loader import Policies
from stratum.authz.model import Decision, SteerContext, TriggerContext
from stratum.trust.principal import Principal


def decide(
    policies: Policies, principal: Principal, tenant: str, topic: str, context: TriggerContext
) -> Decision:
    """Cedar's answer for `principal` triggering `topic` in `tenant` (the event subject's
    tenant, which may differ from the principal's: the policies decide what that means)."""
    nobody = f"no policy permits {principal.actor} to trigger {topic} in tenant {tenant}"
    query = entities.request(principal, tenant, topic, context)
    return _ask(policies, principal, tenant, topic, query, nobody)


def decide_steer(
    policies: Policies,
    principal: Principal,
    action: str,
    tenant: str,
    topic: str,
    context: SteerContext,
) -> Decision:
    """Cedar's answer for `principal` doing `action` (`cancel`) to the run `context` names,
    a run of `topic` in `tenant`."""
    nobody = f"no policy permits {principal.actor} to {action} runs of {topic} in tenant {tenant}"
    query = entities.steer_request(principal, action, tenant, topic, context)
    return _ask(policies, principal, tenant, topic, query, nobody)


def _ask(
    policies: Policies,
    principal: Principal,
    tenant: str,
    topic: str,
    query: dict[str, Any],
    nobody: str,
) -> Decision:
    added = entities.request_entities(principal, tenant, topic, policies.declared)
    try:
        known = policies.entities.with_added_json_str(json.dumps(added), policies.schema)
        result = cedarpy.is_authorized(query, policies.policy_set, known, schema=policies.schema)
    except ValueError as error:  # a name Cedar cannot take: nothing may run on it
        return Decision(
            allowed=False, policy_ids=[], reasons=[f"the request does not fit the schema: {error}"]
        )
    errors = [f"policy error: {error}" for error in result.diagnostics.errors]
    ids = sorted(result.diagnostics.reasons)
    if result.allowed:
        return Decision(allowed=True, policy_ids=ids, reasons=_why(policies, ids) + errors)
    if ids:
        return Decision(allowed=False, policy_ids=ids, reasons=_why(policies, ids) + errors)
    return Decision(allowed=False, policy_ids=[], reasons=[nobody, *errors])


def _why(policies: Policies, ids: list[str]) -> list[str]:
    """Each deciding policy's `@reason`, or its id and place when it gives none."""
    return [policies.reasons.get(i) or f"policy {i} ({policies.places.get(i, '?')})" for i in ids]
