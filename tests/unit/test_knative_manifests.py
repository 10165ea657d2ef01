"""deploy/knative/ matches the code: every YAML parses, each function has a Knative
Service, a Trigger taking exactly the event types it consumes, a func.yaml, and a KEDA
ScaledObject on its own durable consumer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from stratum.bus.subjects import Subjects
from stratum.events import PAYLOADS
from stratum.runtime import Function
from stratum.runtime.http_adapter import INTERNAL_TYPE_PREFIX, accepts
from stratum.runtime.jetstream import durable_name
from stratum_host.registry import FUNCTION_NAMES, placed
from tests.conftest import ROOT, make_settings

KNATIVE = ROOT / "deploy" / "knative"
PREFIX = "stratum"


@pytest.fixture(scope="module")
def functions(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Function]:
    """Every function as the registry places it (only its declaration is read)."""
    settings = make_settings(tmp_path_factory.mktemp("k"), "", subject_prefix=PREFIX)
    return {function.name: function for function in placed(settings, Subjects(PREFIX))}


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def all_documents() -> list[dict[str, Any]]:
    return [doc for path in sorted(KNATIVE.rglob("*.yaml")) for doc in documents(path)]


def of_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in all_documents() if doc.get("kind") == kind}


def test_every_yaml_parses() -> None:
    paths = sorted(KNATIVE.rglob("*.yaml"))
    assert len(paths) >= 1 + 4 * len(FUNCTION_NAMES)
    for path in paths:
        assert documents(path), f"{path} is empty"


def test_the_broker_is_a_nats_jetstream_broker() -> None:
    [broker] = of_kind("Broker").values()
    assert broker["metadata"]["annotations"]["eventing.knative.dev/broker.class"] == (
        "NatsJetStreamBroker"
    )


def trigger_types(trigger: dict[str, Any]) -> tuple[str, set[str]]:
    """("exact", types) for an any-of-exact filter; ("not-prefix", {prefix}) for ingest's."""
    [only] = trigger["spec"]["filters"]
    if "not" in only:
        return "not-prefix", {only["not"]["prefix"]["type"]}
    return "exact", {choice["exact"]["type"] for choice in only["any"]}


def test_every_trigger_takes_exactly_the_types_its_function_consumes(
    functions: dict[str, Function],
) -> None:
    triggers = of_kind("Trigger")
    subjects = Subjects(PREFIX)
    assert set(triggers) == {f"stratum-{name}" for name in FUNCTION_NAMES}
    for name, function in functions.items():
        trigger = triggers[f"stratum-{name}"]
        assert trigger["spec"]["subscriber"]["ref"]["name"] == f"stratum-{name}"
        assert trigger["spec"]["broker"] == of_kind("Broker").popitem()[0]
        kind, types = trigger_types(trigger)
        consumed = {t for t in PAYLOADS if accepts(function, subjects, t)}
        if name == "ingest":
            # publishers' topics are open-ended: every type but Stratum's own
            assert (kind, types) == ("not-prefix", {INTERNAL_TYPE_PREFIX})
            assert consumed == set()
            assert accepts(function, subjects, "crate.push")
        else:
            assert kind == "exact"
            assert types == consumed, name
    # the projector folds every event there is
    assert trigger_types(triggers["stratum-projector"])[1] == set(PAYLOADS)


def test_every_function_has_a_service_func_yaml_and_scaled_object(
    functions: dict[str, Function],
) -> None:
    services = of_kind("Service")
    scaled = of_kind("ScaledObject")
    deployments = of_kind("Deployment")
    for name, function in functions.items():
        service = services[f"stratum-{name}"]
        assert service["apiVersion"] == "serving.knative.dev/v1"
        [container] = service["spec"]["template"]["spec"]["containers"]
        assert container["image"] == "stratum-functions:latest"
        assert container["args"] == ["function", "serve", name]
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"

        [func] = documents(KNATIVE / name / "func.yaml")
        assert func["name"] == f"stratum-{name}" and func["specVersion"]

        scaler = scaled[f"stratum-{name}"]
        [trigger] = scaler["spec"]["triggers"]
        assert trigger["type"] == "nats-jetstream"
        assert trigger["metadata"]["consumer"] == durable_name(PREFIX, function)
        assert trigger["metadata"]["stream"] == function.stream
        assert int(trigger["metadata"]["lagThreshold"]) > 0
        target = deployments[scaler["spec"]["scaleTargetRef"]["name"]]
        [runner] = target["spec"]["template"]["spec"]["containers"]
        assert runner["args"] == ["function", "run", name]


def test_every_env_var_is_a_setting_the_code_reads() -> None:
    from stratum.config import Settings

    fields = {f"STRATUM_{name.upper()}" for name in Settings.model_fields}
    for doc in all_documents():
        if doc.get("kind") not in ("Service", "Deployment"):
            continue
        for container in doc["spec"]["template"]["spec"]["containers"]:
            for env in container.get("env", []):
                assert env["name"] in fields, f"{doc['metadata']['name']}: {env['name']}"
