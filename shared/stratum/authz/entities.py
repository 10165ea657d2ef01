"""Stratum's Cedar entity model: how a trigger becomes a Cedar request.

- principal: `Stratum::Publisher::"<tenant>/<name>"` (an NKey-verified publisher) or
  `Stratum::Source::"<tenant>/<name>"` (an unverified CloudEvents source), with
  `tenant`, `name`, `roles`; a member of its `Stratum::Tenant` and of the groups
  `entities.json` gives it (which may also give it roles);
- action: `Stratum::Action::"trigger"`;
- resource: `Stratum::Topic::"<tenant>/<topic>"` with `tenant` and `name`, in its tenant;
- context: `subject`, `time` (a Cedar datetime), `event` (`id`, `type`, `source`).

The tenant is part of every id, so one tenant's names never match another's.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import cedarpy

from stratum.authz.model import TriggerContext
from stratum.bus.subjects import TENANT_PATTERN
from stratum.trust.principal import Principal

NAMESPACE = "Stratum"
TENANT = f"{NAMESPACE}::Tenant"
TOPIC = f"{NAMESPACE}::Topic"
PUBLISHER = f"{NAMESPACE}::Publisher"
SOURCE = f"{NAMESPACE}::Source"
PRINCIPAL_TYPES = {"publisher": PUBLISHER, "source": SOURCE}
ACTION = {"type": f"{NAMESPACE}::Action", "id": "trigger"}


def uid(kind: str, ident: str) -> dict[str, str]:
    return {"type": kind, "id": ident}


def uid_key(value: Any) -> tuple[str, str]:
    """(type, id) of an entity uid in Cedar JSON (`{"type", "id"}` or `{"__entity": …}`)."""
    inner = value.get("__entity", value) if isinstance(value, dict) else None
    if not isinstance(inner, dict) or not {"type", "id"} <= set(inner):
        raise ValueError(f"not an entity uid: {json.dumps(value)[:80]}")
    return str(inner["type"]), str(inner["id"])


def principal_uid(principal: Principal) -> dict[str, str]:
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


def request_entities(
    principal: Principal, tenant: str, topic: str, declared: frozenset[tuple[str, str]]
) -> list[dict[str, Any]]:
    """The entities a request adds to the declared ones: its topic, and its principal
    unless `entities.json` declares it (with its groups and roles)."""
    added = [topic_entity(tenant, topic)]
    who = principal_uid(principal)
    if (who["type"], who["id"]) not in declared:
        added.append(principal_entity(who["type"], principal.tenant, principal.name, [], []))
    return added


def cedar_time(moment: datetime) -> str:
    """`2026-11-22T04:44:33.471Z`: Cedar's datetime takes milliseconds at most."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def probe(schema: cedarpy.Schema, entities: cedarpy.Entities) -> str | None:
    """Why the requests Stratum sends would not fit `schema`, or None if they do."""
    context = TriggerContext(
        subject="stratum.events.probe.probe",
        time=datetime(2000, 1, 1, tzinfo=UTC),
        event_id="probe",
        event_type="probe",
        event_source="probe",
    )
    for principal in (
        Principal(kind="publisher", name="probe", tenant="probe"),
        Principal(kind="source", name="probe", tenant="probe"),
    ):
        kind = principal.kind
        added = request_entities(principal, "probe", "probe", frozenset())
        try:
            with_request = entities.with_added_json_str(json.dumps(added), schema)
        except ValueError as error:
            return f"the schema does not fit Stratum's {PRINCIPAL_TYPES[kind]} or Topic: {error}"
        result = cedarpy.is_authorized(
            request(principal, "probe", "probe", context), "", with_request, schema=schema
        )
        if result.diagnostics.errors:
            return (
                f"the schema does not fit the request Stratum sends for a {kind}: "
                f"{'; '.join(result.diagnostics.errors)}"
            )
    return None
