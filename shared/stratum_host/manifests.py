"""Knative (and KEDA) manifests from the functions' own declarations (the registry):
`deploy/knative/generate.py` writes them into deploy/knative/, and
tests/unit/test_knative_manifests.py checks the files still match the code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from stratum.bus.subjects import Subjects
from stratum.config import load_settings
from stratum.events import PAYLOADS
from stratum.runtime import Declaration, Function
from stratum.runtime.http_adapter import INTERNAL_TYPE_PREFIX, accepts
from stratum.runtime.jetstream import durable_name
from stratum_host.registry import DECLARATIONS, placed

NAMESPACE = "stratum"
BROKER = "stratum"
IMAGE = "stratum-functions:latest"
PREFIX = "stratum"
NATS_MONITORING = "nats.nats-io.svc.cluster.local:8222"
# what every function reads (the rest of the startup config keeps its defaults)
ENV: list[dict[str, Any]] = [
    {"name": "STRATUM_HTTP_HOST", "value": "0.0.0.0"},
    {"name": "STRATUM_SUBJECT_PREFIX", "value": PREFIX},
    {"name": "STRATUM_SURREAL_URL", "value": "ws://surrealdb.stratum.svc.cluster.local:8000"},
    {"name": "STRATUM_DATA_DIR", "value": "/var/lib/stratum"},
    {"name": "STRATUM_WATCH", "value": "false"},
]
SECRETS: list[dict[str, Any]] = [  # from a Secret the operator creates (see README.md)
    {
        "name": "STRATUM_SURREAL_USER",
        "valueFrom": {"secretKeyRef": {"name": "stratum", "key": "surreal-user"}},
    },
    {
        "name": "STRATUM_SURREAL_PASSWORD",
        "valueFrom": {"secretKeyRef": {"name": "stratum", "key": "surreal-password"}},
    },
]
VAULT: list[dict[str, Any]] = [
    {"name": "STRATUM_VAULT_ADDR", "value": "http://openbao.stratum.svc.cluster.local:8200"},
    {
        "name": "STRATUM_VAULT_TOKEN",
        "valueFrom": {"secretKeyRef": {"name": "stratum", "key": "vault-token"}},
    },
]


def functions(root: Path) -> list[tuple[Declaration, Function]]:
    """Every function's declaration, and the function placed under the prefix (nothing is
    opened, no handler is built)."""
    settings = load_settings(None, root=root, environ={}, overrides={"data_dir": "/tmp/unused"})
    return list(zip(DECLARATIONS, placed(settings, Subjects(PREFIX)), strict=True))


def consumed_types(function: Function) -> list[str]:
    return sorted(kind for kind in PAYLOADS if accepts(function, Subjects(PREFIX), kind))


def env_of(declaration: Declaration) -> list[dict[str, Any]]:
    """What it reads; a function that runs scripts takes node credentials from OpenBao."""
    return ENV + SECRETS + (VAULT if declaration.runs_scripts else [])


def service(declaration: Declaration) -> dict[str, Any]:
    name = declaration.name
    probe = {"httpGet": {"path": "/readyz"}, "periodSeconds": 5}
    return {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {
            "name": f"stratum-{name}",
            "namespace": NAMESPACE,
            "labels": {"app.kubernetes.io/part-of": "stratum", "stratum.dev/function": name},
        },
        "spec": {
            "template": {
                "metadata": {"annotations": {"autoscaling.knative.dev/min-scale": "0"}},
                "spec": {
                    # a stage runs its scripts within one request
                    "timeoutSeconds": 900 if declaration.runs_scripts else 60,
                    "containers": [
                        {
                            "image": IMAGE,
                            "args": ["function", "serve", name],
                            "ports": [{"containerPort": 8080}],
                            "env": env_of(declaration),
                            "readinessProbe": probe,
                            "livenessProbe": {"httpGet": {"path": "/healthz"}, "periodSeconds": 10},
                        }
                    ],
                },
            }
        },
    }


def sink_binding(name: str) -> dict[str, Any]:
    """K_SINK for the function: events beyond the reply go to the broker."""
    return {
        "apiVersion": "sources.knative.dev/v1",
        "kind": "SinkBinding",
        "metadata": {"name": f"stratum-{name}-sink", "namespace": NAMESPACE},
        "spec": {
            "subject": {
                "apiVersion": "serving.knative.dev/v1",
                "kind": "Service",
                "name": f"stratum-{name}",
            },
            "sink": {
                "ref": {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker", "name": BROKER}
            },
        },
    }


def trigger(declaration: Declaration, function: Function) -> dict[str, Any]:
    name = function.name
    if declaration.source == "publishers":  # every type but Stratum's own
        filters: list[dict[str, Any]] = [{"not": {"prefix": {"type": INTERNAL_TYPE_PREFIX}}}]
    else:
        filters = [{"any": [{"exact": {"type": kind}} for kind in consumed_types(function)]}]
    return {
        "apiVersion": "eventing.knative.dev/v1",
        "kind": "Trigger",
        "metadata": {"name": f"stratum-{name}", "namespace": NAMESPACE},
        "spec": {
            "broker": BROKER,
            "filters": filters,
            "subscriber": {
                "ref": {
                    "apiVersion": "serving.knative.dev/v1",
                    "kind": "Service",
                    "name": f"stratum-{name}",
                }
            },
            "delivery": {
                "retry": function.max_deliver,
                "backoffPolicy": "exponential",
                "backoffDelay": "PT0.2S",
            },
        },
    }


def _func_value(env: dict[str, Any]) -> str:
    """func's spelling of a value, or of a key of a Secret."""
    if "value" in env:
        return str(env["value"])
    ref = env["valueFrom"]["secretKeyRef"]
    return "{{ secret:" + str(ref["name"]) + ":" + str(ref["key"]) + " }}"


def func_yaml(declaration: Declaration) -> dict[str, Any]:
    name = declaration.name
    return {
        "specVersion": "0.36.0",
        "name": f"stratum-{name}",
        "runtime": "python",
        "registry": "",
        "image": IMAGE,
        "namespace": NAMESPACE,
        "created": "2026-01-01T00:00:00Z",
        "invoke": "cloudevent",
        "build": {"builder": "host", "containerfile": "deploy/images/Containerfile.functions"},
        "run": {
            "envs": [{"name": e["name"], "value": _func_value(e)} for e in env_of(declaration)]
        },
        "deploy": {
            "namespace": NAMESPACE,
            "image": IMAGE,
            "healthEndpoints": {"liveness": "/healthz", "readiness": "/readyz"},
            "options": {"scale": {"min": 0}},
        },
    }


def deployment(declaration: Declaration, function: Function) -> list[dict[str, Any]]:
    name = function.name
    labels = {"app.kubernetes.io/part-of": "stratum", "stratum.dev/function": name}
    nats = {"name": "STRATUM_NATS_URL", "value": "nats://nats.nats-io.svc.cluster.local:4222"}
    env = [*env_of(declaration), nats]
    return [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": f"stratum-{name}", "namespace": NAMESPACE, "labels": dict(labels)},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": dict(labels)},
                "template": {
                    "metadata": {"labels": dict(labels)},
                    "spec": {
                        "containers": [
                            {
                                "name": name,
                                "image": IMAGE,
                                "args": ["function", "run", name],
                                "env": env,
                            }
                        ]
                    },
                },
            },
        },
        {
            "apiVersion": "keda.sh/v1alpha1",
            "kind": "ScaledObject",
            "metadata": {"name": f"stratum-{name}", "namespace": NAMESPACE},
            "spec": {
                "scaleTargetRef": {"name": f"stratum-{name}"},
                # publishers' events wait for nobody to scale up
                "minReplicaCount": 1 if declaration.source == "publishers" else 0,
                "maxReplicaCount": 10,
                "pollingInterval": 5,
                "cooldownPeriod": 120,
                "triggers": [
                    {
                        "type": "nats-jetstream",
                        "metadata": {
                            "natsServerMonitoringEndpoint": NATS_MONITORING,
                            "account": "$G",
                            "stream": function.stream,
                            "consumer": durable_name(PREFIX, function),
                            # a stage's scripts take seconds: scale on a short queue
                            "lagThreshold": "10" if declaration.runs_scripts else "100",
                            "activationLagThreshold": "0",
                        },
                    }
                ],
            },
        },
    ]


def dump(path: Path, documents: list[dict[str, Any]], header: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    body = "---\n".join(yaml.safe_dump(doc, sort_keys=False, width=100) for doc in documents)
    path.write_text(f"# {header} (written by deploy/knative/generate.py)\n" + body)


def write(here: Path, root: Path) -> None:
    """Write every manifest into `here` (deploy/knative/)."""
    broker = {
        "apiVersion": "eventing.knative.dev/v1",
        "kind": "Broker",
        "metadata": {
            "name": BROKER,
            "namespace": NAMESPACE,
            "annotations": {"eventing.knative.dev/broker.class": "NatsJetStreamBroker"},
        },
        "spec": {
            "delivery": {"retry": 10, "backoffPolicy": "exponential", "backoffDelay": "PT0.2S"}
        },
    }
    dump(
        here / "broker.yaml",
        [broker],
        "the broker every function's Trigger reads and K_SINK points at",
    )
    for declaration, function in functions(root):
        name = function.name
        dump(
            here / name / "service.yaml",
            [service(declaration), sink_binding(name)],
            f"{name}: Knative Service and its K_SINK",
        )
        dump(
            here / name / "trigger.yaml",
            [trigger(declaration, function)],
            f"{name}: the event types it consumes",
        )
        dump(here / name / "func.yaml", [func_yaml(declaration)], f"{name}: Knative func project")
        dump(
            here / "keda" / f"{name}.yaml",
            deployment(declaration, function),
            f"{name}: plain Deployment on JetStream, scaled by KEDA",
        )
