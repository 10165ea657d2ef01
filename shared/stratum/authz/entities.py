"""Stratum's Cedar entity model: how a trigger, or an operator's action on a run, becomes
a Cedar request.

- principal: `Stratum::Publisher::"<tenant>/<name>"` (an NKey-verified publisher) or
  `Stratum::Source::"<tenant>/<name>"` (an unverified CloudEvents source), with
  `tenant`, `name`, `roles`; a member of its `Stratum::Tenant` and of the groups
  `entities.json` gives it (which may also give it roles). On the API only, also
  `Stratum::Operator::"<name>"` (the operator key: no tenant, only `name`);
- action: `Stratum::Action::"trigger"`, or `"cancel"` on a run;
- resource: `Stratum::Topic::"<tenant>/<topic>"` with `tenant` and `name`, in its tenant
  (for an action on a run: the topic that started it);
- context of `trigger`: `subject`, `time` (a Cedar datetime), `event` (`id`, `type`,
  `source`); of an action on a run: `run` (`id`, `actor`, `status`), `reason`, `time`.

The tenant is part of every id, so one tenant's names never match another's.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import cedarpy

from stratum.authz.model import SteerContext, TriggerContext
from stratum.bus.subjects import TENANT_PATTERN
from stratum.trust.principal import Principal

NAMESPACE = "Stratum"
TENANT = f"{NAMESPACE}::Tenant"
TOPIC = f"{NAMESPACE}::Topic"
PUBLISHER = f"{NAMESPACE}::Publisher"
SOURCE = f"{NAMESPACE}::Source"
OPERATOR = f"{NAMESPACE}::Operator"
PRINCIPAL_TYPES = {"publisher": PUBLISHER, "source": SOURCE, "operator": OPERATOR}
ACTION = {"type": f"{NAMESPACE}::Action", "id": "trigger"}
# what an operator, or a permitted publisher, may do to a run once it exists
STEERING_ACTIONS = ("cancel", "resume", "rerun")


def uid(kind: str, ident: str) -> dict[str, str]:
    return {"type": kind, "id": ident}


def uid_key(value: Any) -> tuple[str, str]:
    """(type, id) of an entity uid in Cedar JSON (`{"type", "id"}` or `{"__entity": …}`)."""
    inner = value.get("__entity", value) if isinstance(value, dict) else None
    if not isinstance(inner, dict) or not {"type", "id"} <= set(inner):
        raise ValueError(f"not an entity uid: {json.dumps(value)[:80]}")
    return str(inner["type"]), str(inner["id"])


def principal_uid(principal: Principal) -> dict[str, str]:
    if principal.kind == "operator":
        return uid(OPERATOR, principal.name)
    return uid(PRINCIPAL_TYPES[principal.kind], f"{principal.tenant}/{principal.name}")


def topic_uid(tenant: str, topic: str) -> dict[str, str]:
    return uid(TOPIC, f"{tenant}/{topic}")


def principal_entity(
    kind: str, tenant: str, name: str, roles: list[str], parents: list[dict[str, str]]
) -> dict[str, Any]:
    return {
        "uid": uid(kind, f"{tenant}/{name}"),
        "attrs": {"tenant": {"__entity": uid(TENANT, tenant)}, "name": name, "roles": roles},
        "parents": [*parents, uid(TENANT, tenant)],
    }


def topic_entity(tenant: str, topic: str) -> dict[str, Any]:
    return {
        "uid": topic_uid(tenant, topic),
        "attrs": {"tenant": {"__entity": uid(TENANT, tenant)}, "name": topic},
        "parents": [uid(TENANT, tenant)],
    }


def complete(entity: Any) -> dict[str, Any]:
    """An `entities.json` entry as Cedar needs it. A publisher or source is written as its
    uid (`<tenant>/<name>`), its groups (`parents`) and optionally `roles`; its tenant, name
    and tenant membership follow from the uid, so the file cannot contradict them. Topics
    are described by each event, never here."""
    if not isinstance(entity, dict) or "uid" not in entity:
        raise ValueError('must be an object with a "uid"')
    kind, ident = uid_key(entity["uid"])
    if kind == TOPIC:
        raise ValueError(f"{kind} entities come from each event; do not declare {ident!r}")
    if kind not in (PUBLISHER, SOURCE):
        return {"attrs": {}, "parents": [], **entity}
    tenant, slash, name = ident.partition("/")
    if not slash or not name or not TENANT_PATTERN.match(tenant):
        raise ValueError(f"{kind} id {ident!r} must be <tenant>/<name>")
    attrs = entity.get("attrs") or {}
    roles = attrs.get("roles", [])
    if not isinstance(roles, list) or not all(isinstance(role, str) for role in roles):
        raise ValueError(f"{kind}::{ident!r}: roles must be a list of strings")
    parents = entity.get("parents") or []
    return principal_entity(kind, tenant, name, roles, [uid(*uid_key(p)) for p in parents])


def request(
    principal: Principal, tenant: str, topic: str, context: TriggerContext
) -> dict[str, Any]:
    return {
        "principal": principal_uid(principal),
        "action": ACTION,
        "resource": topic_uid(tenant, topic),
        "context": {
            "subject": context.subject,
            "time": {"__extn": {"fn": "datetime", "arg": cedar_time(context.time)}},
            "event": {
                "id": context.event_id,
                "type": context.event_type,
                "source": context.event_source,
            },
        },
    }


def steer_request(
    principal: Principal, action: str, tenant: str, topic: str, context: SteerContext
) -> dict[str, Any]:
    """`action` (one of STEERING_ACTIONS) on a run of `topic` in `tenant`."""
    if action not in STEERING_ACTIONS:
        raise ValueError(f"not an action on a run: {action!r}")
    return {
        "principal": principal_uid(principal),
        "action": {"type": f"{NAMESPACE}::Action", "id": action},
        "resource": topic_uid(tenant, topic),
        "context": {
            "run": {"id": context.run_id, "actor": context.run_actor, "status": context.run_status},
            "reason": context.reason,
            "time": {"__extn": {"fn": "datetime", "arg": cedar_time(context.time)}},
        },
    }


def request_entities(
    principal: Principal, tenant: str, topic: str, declared: frozenset[tuple[str, str]]
) -> list[dict[str, Any]]:
    """The entities a request adds to the declared ones: its topic, and its principal
    unless `entities.json` declares it (with its groups and roles)."""
    added = [topic_entity(tenant, topic)]
    who = principal_uid(principal)
    if (who["type"], who["id"]) in declared:
        return added
    if principal.kind == "operator":
        added.append({"uid": who, "attrs": {"name": principal.name}, "parents": []})
    else:
        added.append(principal_entity(who["type"], principal.tenant, principal.name, [], []))
    return added


def cedar_time(moment: datetime) -> str:
    """`2026-11-22T04:44:33.471Z`: Cedar's datetime takes milliseconds at most."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def probe(schema: cedarpy.Schema, entities: cedarpy.Entities) -> str | None:
    """Why the requests Stratum sends would not fit `schema`, or None if they do."""
    when = datetime(2000, 1, 1, tzinfo=UTC)
    trigger = TriggerContext(
        subject="stratum.events.probe.probe",
        time=when,
        event_id="probe",
        event_type="probe",
        event_source="probe",
    )
    steer = SteerContext(
        run_id="probe", run_actor="source:probe", run_status="Running", reason="", time=when
    )
    publisher = Principal(kind="publisher", name="probe", tenant="probe")
    source = Principal(kind="source", name="probe", tenant="probe")
    operator = Principal(kind="operator", name="probe", tenant="")
    asked: list[tuple[Principal, str, dict[str, Any]]] = [
        (publisher, "trigger", request(publisher, "probe", "probe", trigger)),
        (source, "trigger", request(source, "probe", "probe", trigger)),
    ]
    for action in STEERING_ACTIONS:
        for who in (publisher, source, operator):
            asked.append((who, action, steer_request(who, action, "probe", "probe", steer)))
    for principal, action, query in asked:
        added = request_entities(principal, "probe", "probe", frozenset())
        try:
            with_request = entities.with_added_json_str(json.dumps(added), schema)
        except ValueError as error:
            kind = PRINCIPAL_TYPES[principal.kind]
            return f"the schema does not fit Stratum's {kind} or Topic: {error}"
        result = cedarpy.is_authorized(query, "", with_request, schema=schema)
        if result.diagnostics.errors:
            return (
                f"the schema does not fit the {action} request Stratum sends for a "
                f"{PRINCIPAL_TYPES[principal.kind]}: {'; '.join(result.diagnostics.errors)}"
            )
    return None
