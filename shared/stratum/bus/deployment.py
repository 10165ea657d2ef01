"""A nats-server of a deployment's own (compose, Kubernetes, the container tests), with the
same NKey users and permissions `stratum up` gives its own: one seed per identity (core,
each function) and a complete server configuration (listen address, JetStream store,
every user). Stratum's processes then connect with `nats_url` and `nats_seeds`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from stratum.bus.nkeys import (
    CORE_IDENTITY,
    FunctionGrant,
    identity_seeds,
    server_config,
)
from stratum.bus.subjects import Subjects
from stratum.runtime.function import Function
from stratum.runtime.jetstream import durable_name
from stratum.store import PublisherRecord

SEEDS = "seeds"
CONFIG = "nats-server.conf"


def grants(functions: Iterable[Function], subjects: Subjects) -> list[FunctionGrant]:
    """What each function may do on the bus: its consumer, the events it emits."""
    prefix = subjects.prefix.replace(".", "-")
    return [
        FunctionGrant(
            function.name,
            function.stream,
            durable_name(prefix, function),
            tuple(subjects.internal(kind) for kind in function.emits),
            function.listens,
        )
        for function in functions
    ]


def deployment_config(
    seeds: dict[str, str],
    function_grants: Iterable[FunctionGrant],
    publishers: Iterable[PublisherRecord],
    subjects: Subjects,
    *,
    listen: str,
    store_dir: str,
) -> str:
    """A whole nats-server configuration: where it listens, JetStream, every user."""
    head = f"listen: {json.dumps(listen)}\njetstream: {json.dumps({'store_dir': store_dir})}\n"
    return head + server_config(seeds, function_grants, publishers, subjects)


def write_deployment(
    out: Path,
    functions: Iterable[Function],
    subjects: Subjects,
    *,
    publishers: Iterable[PublisherRecord] = (),
    listen: str = "127.0.0.1:4222",
    store_dir: str = "/data/jetstream",
) -> Path:
    """Seeds under `out/seeds/` (kept if there: the users stay the same) and the server's
    configuration `out/nats-server.conf` (mode 0600: it names every user); its path."""
    built = list(functions)
    seeds = identity_seeds(out / SEEDS, (CORE_IDENTITY, *(f.name for f in built)))
    path = out / CONFIG
    path.write_text(
        deployment_config(
            seeds,
            grants(built, subjects),
            publishers,
            subjects,
            listen=listen,
            store_dir=store_dir,
        )
    )
    path.chmod(0o600)
    return path
