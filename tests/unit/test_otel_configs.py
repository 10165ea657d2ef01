"""The observability stack's files (otel/, deploy/compose.yaml) agree with each other and
with the metrics Stratum exports: no servers, just the files read as data.

A dashboard that queries a misspelled or renamed metric shows an empty panel and nobody
notices; these tests notice."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from stratum.runs.status import RunStatus
from stratum.telemetry.metrics import REGISTRY, exported_names

ROOT = Path(__file__).resolve().parents[2]
OTEL = ROOT / "otel"
COMPOSE = ROOT / "deploy" / "compose.yaml"
DASHBOARD = OTEL / "grafana" / "dashboards" / "stratum.json"
DATASOURCES = OTEL / "grafana" / "provisioning" / "datasources" / "datasources.yaml"
ALERTS = OTEL / "alerts.yml"
# Debian's promtool, unpacked beside prometheus by `make install`
PROMETHEUS = Path(sys.executable).parent / "prometheus"
PROMTOOL = PROMETHEUS.resolve().parent / "promtool" if PROMETHEUS.exists() else None
YAML_FILES = sorted([*OTEL.rglob("*.yaml"), *OTEL.rglob("*.yml"), COMPOSE])

# The sample each metric family is shown by. Every family in metrics.py must be listed
# (test_every_metric_family_is_listed), and the dashboard must query each of these.
SHOWN_BY = {
    "stratum_runs": "stratum_runs_total",
    "stratum_run_duration_seconds": "stratum_run_duration_seconds_bucket",
    "stratum_node_duration_seconds": "stratum_node_duration_seconds_bucket",
    "stratum_stage_fanout_nodes": "stratum_stage_fanout_nodes_bucket",
    "stratum_compensations": "stratum_compensations_total",
    "stratum_dead_letters": "stratum_dead_letters_total",
    "stratum_messages": "stratum_messages_total",
    "stratum_handler_duration_seconds": "stratum_handler_duration_seconds_bucket",
    "stratum_queue_depth": "stratum_queue_depth",
    "stratum_queue_in_flight": "stratum_queue_in_flight",
    "stratum_events_denied": "stratum_events_denied_total",
    "stratum_graph_reloads": "stratum_graph_reloads_total",
    "stratum_graph": "stratum_graph_info",
    "stratum_definitions_degraded": "stratum_definitions_degraded",
    "stratum_definitions_loaded_timestamp_seconds": "stratum_definitions_loaded_timestamp_seconds",
    "stratum_policies_degraded": "stratum_policies_degraded",
    "stratum_policies_loaded_timestamp_seconds": "stratum_policies_loaded_timestamp_seconds",
    "stratum_db_transactions": "stratum_db_transactions_total",
    "stratum_events_published": "stratum_events_published_total",
    "stratum_interventions": "stratum_interventions_total",
}

# samples of the families labelled by tenant (metrics.py)
TENANT_LABELLED = {
    "stratum_runs_total",
    "stratum_run_duration_seconds_bucket",
    "stratum_node_duration_seconds_bucket",
    "stratum_stage_fanout_nodes_bucket",
    "stratum_compensations_total",
    "stratum_dead_letters_total",
    "stratum_events_denied_total",
    "stratum_interventions_total",
}

METRIC_NAME = re.compile(r"\bstratum_[a-z0-9_]+")
RANGE = re.compile(r"\[([^\]]+)\]")
RUNS_SELECTOR = re.compile(r"stratum_runs_total\{([^}]*)\}")
SELECTOR = re.compile(r"\b(stratum_[a-z0-9_]+)(\{[^}]*\})?")
STATUS_MATCHER = re.compile(r'status\s*(=~|=|!=|!~)\s*"([^"]*)"')
# the projector counts runs by status in lowercase snake_case: CompensationFailed ->
# compensation_failed
RUN_STATUS_LABELS = {status.name.lower() for status in RunStatus}


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every panel that shows data, rows opened up."""
    for panel in items:
        if panel.get("type") == "row":
            yield from panels(panel.get("panels", []))
        else:
            yield panel


def variable_queries(board: dict[str, Any]) -> list[str]:
    queries = []
    for variable in board["templating"]["list"]:
        query = variable.get("query")
        queries.append(query["query"] if isinstance(query, dict) else str(query))
    return queries


def promql(board: dict[str, Any]) -> list[str]:
    """Every PromQL expression: panel targets and template variable queries."""
    exprs = [
        target["expr"]
        for panel in panels(board["panels"])
        for target in panel.get("targets", [])
        if "expr" in target
    ]
    return exprs + variable_queries(board)


def unknown_metrics(expr: str) -> set[str]:
    return set(METRIC_NAME.findall(expr)) - exported_names()


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_yaml_parses(path: Path) -> None:
    assert isinstance(load_yaml(path), dict)


def test_the_yaml_files_are_all_there() -> None:
    names = {str(p.relative_to(ROOT)) for p in YAML_FILES}
    assert {
        "otel/collector.yaml",
        "otel/prometheus.yml",
        "otel/alerts.yml",
        "otel/grafana/provisioning/datasources/datasources.yaml",
        "otel/grafana/provisioning/dashboards/dashboards.yaml",
        "deploy/compose.yaml",
    } <= names


def test_dashboard_identity_and_tenant_variable() -> None:
    board = dashboard()
    assert board["uid"] == "stratum-overview"
    assert board["title"] == "Stratum"
    tenant = next(v for v in board["templating"]["list"] if v["name"] == "tenant")
    query = tenant["query"]["query"] if isinstance(tenant["query"], dict) else tenant["query"]
    assert query == "label_values(stratum_runs_total, tenant)"


def test_panels_use_provisioned_datasources() -> None:
    provisioned = {source["uid"] for source in load_yaml(DATASOURCES)["datasources"]}
    assert provisioned == {"stratum-prometheus", "stratum-jaeger"}
    board = dashboard()
    used = [
        (panel["title"], ref["uid"])
        for panel in panels(board["panels"])
        for ref in [panel["datasource"], *(t.get("datasource") for t in panel["targets"])]
        if ref is not None
    ] + [(v["name"], v["datasource"]["uid"]) for v in board["templating"]["list"]]
    assert used
    assert [(title, uid) for title, uid in used if uid not in provisioned] == []


def test_every_data_panel_has_a_datasource_and_targets() -> None:
    for panel in panels(dashboard()["panels"]):
        assert panel.get("datasource", {}).get("uid"), panel["title"]
        assert panel.get("targets"), panel["title"]


def test_panel_ids_are_unique() -> None:
    ids = [panel["id"] for panel in dashboard()["panels"]]
    assert len(ids) == len(set(ids))


def test_promql_names_only_exported_metrics() -> None:
    exprs = promql(dashboard())
    assert len(exprs) > 10
    assert {expr: unknown_metrics(expr) for expr in exprs if unknown_metrics(expr)} == {}


def test_a_misspelled_metric_is_caught() -> None:
    """The check above can fail: a typo or a missing suffix is reported."""
    assert unknown_metrics("sum(rate(stratum_run_total[5m]))") == {"stratum_run_total"}
    assert unknown_metrics("sum(stratum_compensations)") == {"stratum_compensations"}
    assert unknown_metrics("sum(rate(stratum_runs_total[5m]))") == set()


def test_every_metric_family_is_listed() -> None:
    """A new metric in metrics.py needs a panel (and an entry in SHOWN_BY)."""
    families = {metric.name for metric in REGISTRY.collect()}
    assert set(SHOWN_BY) == families
    assert set(SHOWN_BY.values()) <= exported_names()


@pytest.mark.parametrize("family", sorted(SHOWN_BY))
def test_dashboard_shows_family(family: str) -> None:
    queried = {name for expr in promql(dashboard()) for name in METRIC_NAME.findall(expr)}
    assert SHOWN_BY[family] in queried


def test_ranges_follow_the_time_picker() -> None:
    """Rates use $__rate_interval (stats over the whole range: $__range), never a fixed
    window that breaks when the scrape interval or zoom changes."""
    ranges = {r for expr in promql(dashboard()) for r in RANGE.findall(expr)}
    assert ranges <= {"$__rate_interval", "$__range"}
    assert "$__rate_interval" in ranges


def test_run_status_values_exist() -> None:
    statuses: set[str] = set()
    for expr in promql(dashboard()):
        for selector in RUNS_SELECTOR.findall(expr):
            for _, value in STATUS_MATCHER.findall(selector):
                statuses.update(value.split("|"))
    assert statuses
    assert statuses - RUN_STATUS_LABELS == set()
    assert "compensation_failed" in RUN_STATUS_LABELS


def test_tenant_filter_on_tenant_labelled_metrics() -> None:
    """Every query of a metric with a tenant label honours the $tenant variable."""
    unfiltered = [
        f"{name} in {expr}"
        for expr in promql(dashboard())
        if not expr.startswith("label_values(")
        for name, selector in SELECTOR.findall(expr)
        if name in TENANT_LABELLED and 'tenant=~"$tenant"' not in selector
    ]
    assert unfiltered == []


def test_prometheus_scrapes_stratum_and_the_collector() -> None:
    jobs = {job["job_name"]: job for job in load_yaml(OTEL / "prometheus.yml")["scrape_configs"]}
    assert set(jobs) == {"stratum", "otel-collector"}
    for job in jobs.values():
        assert job.get("metrics_path", "/metrics") == "/metrics"
    assert jobs["stratum"]["static_configs"][0]["targets"] == ["127.0.0.1:7464"]
    assert jobs["stratum"]["scrape_interval"] == "5s"
    assert jobs["otel-collector"]["static_configs"][0]["targets"] == ["127.0.0.1:8889"]


def test_collector_pipelines() -> None:
    config = load_yaml(OTEL / "collector.yaml")
    protocols = config["receivers"]["otlp"]["protocols"]
    assert protocols["grpc"]["endpoint"] == "127.0.0.1:4317"
    assert protocols["http"]["endpoint"] == "127.0.0.1:4318"
    pipelines = config["service"]["pipelines"]
    assert pipelines["traces"]["exporters"] == ["otlp_grpc/jaeger"]
    assert pipelines["metrics"]["exporters"] == ["prometheus"]
    assert config["exporters"]["otlp_grpc/jaeger"]["endpoint"] == "127.0.0.1:14317"
    assert config["exporters"]["prometheus"]["endpoint"] == "127.0.0.1:8889"
    for pipeline in pipelines.values():
        assert pipeline["processors"][0] == "memory_limiter"
        # every component a pipeline names is defined
        for kind in ("receivers", "processors", "exporters"):
            assert set(pipeline.get(kind, [])) <= set(config[kind])


def test_compose_services_are_observability_on_host_network() -> None:
    services = load_yaml(COMPOSE)["services"]
    assert {"otel-collector", "jaeger", "prometheus", "grafana"} <= set(services)
    for name, service in services.items():
        if name in ("otel-collector", "jaeger", "prometheus", "grafana"):
            assert service["network_mode"] == "host", name
            assert "observability" in service["profiles"], name
            image = service["image"]
            assert ":" in image and not image.endswith(":latest"), name
            assert "ports" not in service, name  # host networking publishes nothing


def test_compose_mounts_exist() -> None:
    """The observability services' mounts (test_compose.py checks the others')."""
    services = load_yaml(COMPOSE)["services"]
    for name, service in services.items():
        if "observability" not in service.get("profiles", []):
            continue
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (COMPOSE.parent / source).resolve().exists(), f"{name}: {source}"


def test_grafana_finds_the_dashboard_where_compose_mounts_it() -> None:
    grafana = load_yaml(COMPOSE)["services"]["grafana"]
    mounts = dict(v.split(":")[:2] for v in grafana["volumes"])
    inside = mounts["../otel/grafana/dashboards"]
    providers = load_yaml(OTEL / "grafana" / "provisioning" / "dashboards" / "dashboards.yaml")
    assert providers["providers"][0]["options"]["path"] == inside
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{inside}/{DASHBOARD.name}"
    assert mounts["../otel/grafana/provisioning"] == "/etc/grafana/provisioning"


def alert_rules() -> dict[str, dict[str, Any]]:
    return {rule["alert"]: rule for group in load_yaml(ALERTS)["groups"] for rule in group["rules"]}


def test_alerts_query_exported_metrics_and_prometheus_loads_them() -> None:
    rules = alert_rules()
    assert {"StratumDefinitionsDegraded", "StratumPoliciesDegraded"} <= set(rules)
    assert {
        name: unknown_metrics(r["expr"]) for name, r in rules.items() if unknown_metrics(r["expr"])
    } == {}
    assert load_yaml(OTEL / "prometheus.yml")["rule_files"] == [ALERTS.name]
    prometheus = load_yaml(COMPOSE)["services"]["prometheus"]
    mounts = dict(v.split(":")[:2] for v in prometheus["volumes"])
    assert mounts["../otel/alerts.yml"] == "/etc/prometheus/alerts.yml"
    assert mounts["../otel/prometheus.yml"] == "/etc/prometheus/prometheus.yml"


def test_the_degraded_alert_fires_while_a_broken_load_stands(tmp_path: Path) -> None:
    """`promtool test rules` over synthetic series: degraded for 10 minutes fires after
    the rule's 5 (not before) and stops once fixed; a blip fixed within 5 never fires."""
    if PROMTOOL is None or not shutil.which(str(PROMTOOL)):
        pytest.skip(f"no promtool beside {PROMETHEUS}: run `make install`")
    name = "StratumDefinitionsDegraded"
    instance = "127.0.0.1:7464"
    series = f'stratum_definitions_degraded{{instance="{instance}", job="stratum"}}'
    annotations = alert_rules()[name]["annotations"] | {
        "summary": f"Stratum's workflow definitions do not load ({instance})"
    }
    firing = {
        "exp_labels": {"instance": instance, "job": "stratum", "severity": "warning"},
        "exp_annotations": annotations,
    }

    def case(values: str, expected: dict[int, list[dict[str, Any]]]) -> dict[str, Any]:
        checks = [
            {"eval_time": f"{minute}m", "alertname": name, "exp_alerts": alerts}
            for minute, alerts in expected.items()
        ]
        series_values = [{"series": series, "values": values}]
        return {"interval": "1m", "input_series": series_values, "alert_rule_test": checks}

    tests = [
        case("0 1x10 0x5", {4: [], 8: [firing], 14: []}),  # broken from 1m to 11m
        case("0 1x3 0x10", {2: [], 4: [], 6: [], 9: []}),  # fixed at 5m
    ]
    test_file = tmp_path / "alerts.test.yml"
    test_file.write_text(yaml.safe_dump({"rule_files": [str(ALERTS)], "tests": tests}))
    result = subprocess.run(
        [str(PROMTOOL), "test", "rules", str(test_file)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
