"""The transport plane for the nats-server Stratum starts: NKey users and what each may do.

One identity per function, allowed exactly its own consumer's JetStream API, its acks, the
subjects of the events it emits and its dead-letter subject (and to subscribe to the run
events it listens to); a core identity (`stratum`:
streams, the watchdog, the HTTP API's re-drives); and one identity per registered
publisher, allowed to publish only on its own tenant's event subjects. Seeds of Stratum's
own identities live under `<data_dir>/nkeys/` (mode 0600); of publishers, only public keys
are known. nats-server reloads this file on SIGHUP when publishers change.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from stratum.bus.subjects import Subjects
from stratum.store import PublisherRecord
from stratum.trust.signing import new_user_seed, public_key

CORE_IDENTITY = "stratum"


@dataclass(frozen=True)
class FunctionGrant:
    """What one function needs from NATS: its durable on its stream, what it emits."""

    name: str
    stream: str
    durable: str
    emits: tuple[str, ...]  # subjects
    listens: tuple[str, ...] = ()  # subjects it subscribes to plainly (`Function.listens`)


def inbox_prefix(identity: str) -> str:
    """Each identity gets replies on an inbox of its own, so none can read another's."""
    return f"_INBOX_{identity.replace('-', '_').upper()}"


def identity_seeds(folder: Path, names: Iterable[str]) -> dict[str, str]:
    """The seed of each of Stratum's own identities, created on first use (mode 0600)."""
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    seeds = {}
    for name in names:
        path = folder / f"{name}.seed"
        if not path.is_file():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(new_user_seed())
        seeds[name] = path.read_text().strip()
    return seeds


def existing_seeds(folder: Path, names: Iterable[str]) -> dict[str, str]:
    """The seeds of `names` found in `folder` (a deployment's, made by `stratum nats
    config`); none is created."""
    return {
        name: (folder / f"{name}.seed").read_text().strip()
        for name in names
        if (folder / f"{name}.seed").is_file()
    }


def function_permissions(grant: FunctionGrant, subjects: Subjects) -> dict[str, object]:
    consumer = f"{grant.stream}.{grant.durable}"
    return {
        "publish": {
            "allow": [
                f"$JS.API.CONSUMER.CREATE.{consumer}",
                f"$JS.API.CONSUMER.CREATE.{consumer}.>",
                f"$JS.API.CONSUMER.DURABLE.CREATE.{consumer}",
                f"$JS.API.CONSUMER.INFO.{consumer}",
                f"$JS.API.CONSUMER.MSG.NEXT.{consumer}",
                f"$JS.ACK.{consumer}.>",
                subjects.dead(grant.name),
                *grant.emits,
            ]
        },
        "subscribe": {"allow": [f"{inbox_prefix(grant.name)}.>", *grant.listens]},
    }


def publisher_permissions(tenant: str, subjects: Subjects) -> dict[str, object]:
    return {
        "publish": {"allow": [f"{subjects.prefix}.events.{tenant}.>"]},
        "subscribe": {"allow": ["_INBOX.>"]},  # JetStream's acknowledgements of its events
    }


def server_config(
    seeds: Mapping[str, str],
    grants: Iterable[FunctionGrant],
    publishers: Iterable[PublisherRecord],
    subjects: Subjects,
) -> str:
    """nats-server configuration text (its format reads JSON) with every user."""
    users: list[dict[str, object]] = [
        {
            "nkey": public_key(seeds[CORE_IDENTITY]),
            "permissions": {"publish": {"allow": [">"]}, "subscribe": {"allow": [">"]}},
        }
    ]
    users += [
        {
            "nkey": public_key(seeds[grant.name]),
            "permissions": function_permissions(grant, subjects),
        }
        for grant in grants
    ]
    users += [
        {"nkey": record.public_key, "permissions": publisher_permissions(record.tenant, subjects)}
        for record in publishers
        if record.active
    ]
    return "authorization: " + json.dumps({"users": users}, indent=2) + "\n"
