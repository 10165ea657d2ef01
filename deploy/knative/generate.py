"""Writes deploy/knative/ from the functions' own declarations (run from the repo root:
`.venv/bin/python deploy/knative/generate.py`); tests/unit/test_knative_manifests.py
checks the files still match the code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from stratum.bus.subjects import Subjects
from stratum.config import load_settings
from stratum.events import PAYLOADS
from stratum.runtime.http_adapter import INTERNAL_TYPE_PREFIX, accepts
from stratum.runtime.jetstream import durable_name
from stratum_host.function_host import FUNCTION_NAMES, declared_functions

HERE = Path(__file__).resolve().parent
NAMESPACE = "stratum"
BROKER = "stratum"
IMAGE = "stratum-functions:latest"
PREFIX = "stratum"
NATS_MONITORING = "nats.nats-io.svc.cluster.local:8222"
# what every function reads (the rest of the startup config keeps its defaults)
ENV = [
    {"name": "STRATUM_HTTP_HOST", "value": "0.0.0.0"},
    {"name": "STRATUM_SUBJECT_PREFIX", "value": PREFIX},
    {"name": "STRATUM_SURREAL_URL", "value": "ws://surrealdb.stratum.svc.cluster.local:8000"},
    {"name": "STRATUM_DATA_DIR", "value": "/var/lib/stratum"},
    {"name": "STRATUM_WATCH", "value": "false"},
]
SECRETS = [  # from a Secret the operator creates (see README.md)
    {
        "name": "STRATUM_SURREAL_USER",
        "valueFrom": {"secretKeyRef": {"name": "stratum", "key": "surreal-user"}},
    },
    {
        "name": "STRATUM_SURREAL_PASSWORD",
        "valueFrom": {"secretKeyRef": {"name": "stratum", "key": "surreal-password"}},
    },
]
VAULT = [
    {"name": "STRATUM_VAULT_ADDR", "value": "http://openbao.stratum.svc.cluster.local:8200"},
    {
        "name": "STRATUM_VAULT_TOKEN",
        "valueFrom": {"secretKeyRef": {"name": "stratum", "key": "vault-token"}},
    },
]


def functions() -> list[Any]:
    """The five Functions as the server builds them (only their declarations are read:
    nothing is opened, no handler runs)."""
    root = HERE.parent.parent
    settings = load_settings(None, root=root, environ={}, overrides={"data_dir": "/tmp/unused"})
    return declared_functions(settings, Subjects(PREFIX))


def consumed_types(function: Any) -> list[str]:
    return sorted(kind for kind in PAYLOADS if accepts(function, Subjects(PREFIX), kind))


def env_of(name: str) -> list[dict[str, Any]]:
    return ENV + SECRETS + (VAULT if name in ("stage-executor", "compensator") else [])


def service(name: str) -> dict[str, Any]:
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
                    "timeoutSeconds": 900 if name in ("stage-executor", "compensator") else 60,
                    "containers": [
                        {
                            "image": IMAGE,
                            "args": ["function", "serve", name],
                            "ports": [{"containerPort": 8080}],
                            "env": env_of(name),
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


def trigger(function: Any) -> dict[str, Any]:
    name = function.name
    if name == "ingest":  # publishers' events: every type but Stratum's own
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
    return "{{ secret:" + ref["name"] + ":" + ref["key"] + " }}"


def func_yaml(name: str) -> dict[str, Any]:
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
        "run": {"envs": [{"name": e["name"], "value": _func_value(e)} for e in env_of(name)]},
        "deploy": {
            "namespace": NAMESPACE,
            "image": IMAGE,
            "healthEndpoints": {"liveness": "/healthz", "readiness": "/readyz"},
            "options": {"scale": {"min": 0}},
        },
    }


def deployment(function: Any) -> list[dict[str, Any]]:
    name = function.name
    labels = {"app.kubernetes.io/part-of": "stratum", "stratum.dev/function": name}
    nats = {"name": "STRATUM_NATS_URL", "value": "nats://nats.nats-io.svc.cluster.local:4222"}
    env = [*env_of(name), nats]
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
                "minReplicaCount": 1 if name == "ingest" else 0,
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
                            "lagThreshold": "10"
                            if name in ("stage-executor", "compensator")
                            else "100",
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


def main() -> None:
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
        HERE / "broker.yaml",
        [broker],
        "the broker every function's Trigger reads and K_SINK points at",
    )
    for function in functions():
        name = function.name
        dump(
            HERE / name / "service.yaml",
            [service(name), sink_binding(name)],
            f"{name}: Knative Service and its K_SINK",
        )
        dump(
            HERE / name / "trigger.yaml",
            [trigger(function)],
            f"{name}: the event types it consumes",
        )
        dump(HERE / name / "func.yaml", [func_yaml(name)], f"{name}: Knative func project")
        dump(
            HERE / "keda" / f"{name}.yaml",
            deployment(function),
            f"{name}: plain Deployment on JetStream, scaled by KEDA",
        )
    assert {f.name for f in functions()} == set(FUNCTION_NAMES)


if __name__ == "__main__":
    main()
