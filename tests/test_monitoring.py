"""Monitoring: the workload gauges the operator exports, the Grafana dashboard and the Prometheus alerts.

- The per-resource gauges, as reconciles report them (against the fake Kube), and forgotten when the
  resource is deleted.
- The alerts with the real promtool (`check rules`, `test rules` on tests/monitoring/), built from its Go
  module and cached like the control-plane binaries (e2e/controlplane/build.py, `tools()`); every alert has
  cases that fire and cases that must not, and an alert mutated to never / always fire fails them.
- Every metric name used by the dashboard's queries and by the rules is one that metrics.Metrics exports.
- The chart ships both: a ConfigMap for Grafana's sidecar, a PrometheusRule with the rules file's groups.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml
from prometheus_client import generate_latest

from mlplatform.metrics import Metrics
from mlplatform.runtime import loop
from mlplatform.runtime.cache import Cache
from mlplatform.runtime.workqueue import WorkQueue

from .test_install_manifests import helm_run, only, render
from .test_reconcilers import (
    FEATURE_VIEW_ROWS,
    FIXED,
    NS,
    RUNNING_CONDITIONS,
    TRAINER,
    Harness,
    applied,
    job_condition,
    key_of,
    run_status,
    with_status,
)

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "charts" / "mlplatform"
RULES = CHART / "files" / "prometheus-rules.yaml"
RULES_TEST = REPO / "tests" / "monitoring" / "prometheus-rules.test.yaml"
DASHBOARD = CHART / "dashboards" / "mlplatform.json"
# Series Prometheus makes itself for every target, not exported by the operator.
PROMETHEUS_SERIES = {"up"}


def sample(metrics: Metrics, metric: str, **labels) -> float | None:
    return metrics.registry.get_sample_value(metric, labels)


def series(metrics: Metrics, metric: str) -> dict[tuple, float]:
    """Every sample of one family: {sorted label items: value}."""
    return {tuple(sorted(s.labels.items())): s.value
            for family in metrics.registry.collect() for s in family.samples if s.name == metric}


# ------------------------------------------------------------------------ the gauges themselves

class Clock:
    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_resource_phase_and_ready_per_resource_and_counted_by_phase():
    metrics = Metrics()
    metrics.set_phase("ModelDeployment", "risk", "fraud", "Ready", ready=True)
    metrics.set_phase("ModelDeployment", "risk", "churn", "Degraded", ready=False)
    metrics.set_phase("TrainingJob", "risk", "train", "Running")  # Ready not known: no ready series
    assert sample(metrics, "mlplatform_resource_ready", kind="ModelDeployment", namespace="risk", name="fraud") == 1
    assert sample(metrics, "mlplatform_resource_ready", kind="ModelDeployment", namespace="risk", name="churn") == 0
    assert sample(metrics, "mlplatform_resource_ready", kind="TrainingJob", namespace="risk", name="train") is None
    assert series(metrics, "mlplatform_resource_phase") == {
        (("kind", "ModelDeployment"), ("name", "churn"), ("namespace", "risk"), ("phase", "Degraded")): 1,
        (("kind", "ModelDeployment"), ("name", "fraud"), ("namespace", "risk"), ("phase", "Ready")): 1,
        (("kind", "TrainingJob"), ("name", "train"), ("namespace", "risk"), ("phase", "Running")): 1}
    assert sample(metrics, "mlplatform_resources", kind="ModelDeployment", phase="Ready") == 1
    metrics.set_phase("ModelDeployment", "risk", "churn", "Ready", ready=True)
    assert sample(metrics, "mlplatform_resources", kind="ModelDeployment", phase="Ready") == 2
    assert sample(metrics, "mlplatform_resources", kind="ModelDeployment", phase="Degraded") is None
    assert len(series(metrics, "mlplatform_resource_phase")) == 3, "one phase series per resource"


def test_feature_view_staleness_grows_between_reconciles_and_offline_views_export_none():
    last = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)
    clock = Clock(last.timestamp() + 90)
    metrics = Metrics(clock=clock)
    metrics.set_feature_view("risk", "driver-stats", online=True, last_materialized=last, max_staleness_seconds=3600)
    labels = {"namespace": "risk", "name": "driver-stats"}
    assert sample(metrics, "mlplatform_featureview_staleness_seconds", **labels) == 90
    assert sample(metrics, "mlplatform_featureview_max_staleness_seconds", **labels) == 3600
    clock.now += 3600  # no reconcile in between: computed at scrape time
    assert sample(metrics, "mlplatform_featureview_staleness_seconds", **labels) == 3690

    metrics.set_feature_view("risk", "never", online=True, last_materialized=None, max_staleness_seconds=600)
    assert sample(metrics, "mlplatform_featureview_staleness_seconds", namespace="risk", name="never") is None
    assert sample(metrics, "mlplatform_featureview_max_staleness_seconds", namespace="risk", name="never") == 600
    metrics.set_feature_view("risk", "no-budget", online=True, last_materialized=last, max_staleness_seconds=None)
    assert sample(metrics, "mlplatform_featureview_staleness_seconds", namespace="risk", name="no-budget") == 3690
    assert sample(metrics, "mlplatform_featureview_max_staleness_seconds", namespace="risk", name="no-budget") is None
    metrics.set_feature_view("risk", "offline", online=False, last_materialized=last, max_staleness_seconds=600)
    assert sample(metrics, "mlplatform_featureview_staleness_seconds", namespace="risk", name="offline") is None
    assert sample(metrics, "mlplatform_featureview_max_staleness_seconds", namespace="risk", name="offline") is None

    clock.now = last.timestamp() - 5  # a clock behind the API server's: never negative
    assert sample(metrics, "mlplatform_featureview_staleness_seconds", **labels) == 0


def test_model_deployment_replicas_and_training_job_runs_by_phase():
    metrics = Metrics()
    metrics.set_model_deployment("risk", "fraud", ready_replicas=1, desired_replicas=3)
    assert sample(metrics, "mlplatform_modeldeployment_ready_replicas", namespace="risk", name="fraud") == 1
    assert sample(metrics, "mlplatform_modeldeployment_desired_replicas", namespace="risk", name="fraud") == 3
    metrics.set_model_deployment("risk", "fraud", ready_replicas=3, desired_replicas=3)
    assert sample(metrics, "mlplatform_modeldeployment_ready_replicas", namespace="risk", name="fraud") == 3

    runs = [{"run": 1, "phase": "Succeeded"}, {"run": 2, "phase": "Failed"}, {"run": 3, "phase": "Superseded"},
            {"run": 4, "phase": "Failed"}, {"run": 5}]
    metrics.set_training_job("risk", "train", runs=runs)
    assert series(metrics, "mlplatform_trainingjob_runs") == {
        (("name", "train"), ("namespace", "risk"), ("phase", phase)): count
        for phase, count in {"Succeeded": 1, "Failed": 2, "Superseded": 1, "Pending": 1}.items()}
    metrics.set_training_job("risk", "train", runs=runs[1:2])
    assert series(metrics, "mlplatform_trainingjob_runs") == {
        (("name", "train"), ("namespace", "risk"), ("phase", "Failed")): 1}, "phases no longer recorded disappear"


def test_forget_drops_every_series_of_the_resource_and_only_those():
    metrics = Metrics()
    last = datetime(2026, 11, 25, tzinfo=timezone.utc)
    for name in ("gone", "kept"):
        metrics.set_phase("FeatureView", "risk", name, "Ready", ready=True)
        metrics.set_feature_view("risk", name, online=True, last_materialized=last, max_staleness_seconds=60)
        metrics.set_phase("ModelDeployment", "risk", name, "Ready", ready=True)
        metrics.set_model_deployment("risk", name, ready_replicas=1, desired_replicas=1)
        metrics.set_phase("TrainingJob", "risk", name, "Succeeded", ready=True)
        metrics.set_training_job("risk", name, runs=[{"run": 1, "phase": "Succeeded"}])
    before = generate_latest(metrics.registry).decode()
    for kind in ("FeatureView", "ModelDeployment", "TrainingJob"):
        metrics.forget(kind, "risk", "gone")
    after = generate_latest(metrics.registry).decode()
    assert 'name="gone"' in before and 'name="gone"' not in after
    assert after.count('name="kept"') == before.count('name="kept"') == 11  # 3 phase, 3 ready, 5 kind-specific
    assert sample(metrics, "mlplatform_resources", kind="FeatureView", phase="Ready") == 1


def test_every_family_is_exported_even_before_any_resource_exists():
    """The names a dashboard may use do not depend on what happens to exist."""
    names = {family.name for family in Metrics().registry.collect()}
    assert {"mlplatform_resource_phase", "mlplatform_resource_ready", "mlplatform_featureview_staleness_seconds",
            "mlplatform_featureview_max_staleness_seconds", "mlplatform_modeldeployment_ready_replicas",
            "mlplatform_modeldeployment_desired_replicas", "mlplatform_trainingjob_runs", "mlplatform_resources",
            "mlplatform_leader", "mlplatform_reconcile", "mlplatform_reconcile_errors",
            "mlplatform_reconcile_duration_seconds"} <= names


# ------------------------------------------------------------------------ reported by the reconciles

def reconciled(body: dict, cached: list[dict] = ()) -> Harness:
    h = Harness()
    for obj in cached:
        h.add(obj)
    h.add(body)
    loop.process(h.ctx, key_of(body))
    return h


def test_a_model_deployment_reconcile_reports_ready_and_desired_replicas():
    deployment = with_status(applied(FIXED, "Deployment"),
                             {"replicas": 3, "readyReplicas": 2, "updatedReplicas": 3, "observedGeneration": 1})
    metrics = reconciled(FIXED, [deployment]).ctx.metrics
    labels = {"namespace": NS, "name": "scorer"}
    assert sample(metrics, "mlplatform_modeldeployment_ready_replicas", **labels) == 2
    assert sample(metrics, "mlplatform_modeldeployment_desired_replicas", **labels) == 3
    assert sample(metrics, "mlplatform_resource_ready", kind="ModelDeployment", **labels) == 0
    assert sample(metrics, "mlplatform_resource_phase", kind="ModelDeployment", phase="Progressing", **labels) == 1


def test_a_failed_training_run_is_reported_by_phase_and_in_the_runs():
    body = with_status(TRAINER, run_status(TRAINER, conditions=RUNNING_CONDITIONS))
    job = with_status(applied(TRAINER, "Job"), {"failed": 1, "conditions": [
        job_condition("Failed", "BackoffLimitExceeded")]})
    metrics = reconciled(body, [job]).ctx.metrics
    labels = {"namespace": NS, "name": "trainer"}
    assert sample(metrics, "mlplatform_resource_phase", kind="TrainingJob", phase="Failed", **labels) == 1
    assert sample(metrics, "mlplatform_resource_ready", kind="TrainingJob", **labels) == 0
    assert series(metrics, "mlplatform_trainingjob_runs") == {
        (("name", "trainer"), ("namespace", NS), ("phase", "Failed")): 1}


def test_a_stale_feature_view_reports_its_staleness_and_budget():
    row = next(r for r in FEATURE_VIEW_ROWS if "past maxStaleness" in r.id)
    before = datetime.now(timezone.utc).timestamp()
    metrics = reconciled(row.resource).ctx.metrics
    after = datetime.now(timezone.utc).timestamp()
    labels = {"namespace": NS, "name": row.resource["metadata"]["name"]}
    last = datetime(2026, 1, 1, tzinfo=timezone.utc).timestamp()  # the row's lastMaterializedAt
    staleness = sample(metrics, "mlplatform_featureview_staleness_seconds", **labels)
    assert before - last <= staleness <= after - last + 1
    budget = sample(metrics, "mlplatform_featureview_max_staleness_seconds", **labels)
    assert budget is not None and 0 < budget < staleness, "past its budget: Fresh is False"
    assert sample(metrics, "mlplatform_resource_phase", kind="FeatureView", phase=row.phase, **labels) == 1


def test_an_invalid_spec_is_reported_not_ready():
    body = copy.deepcopy(FIXED)
    body["spec"]["replicas"] = -1  # the API server would refuse it; old CRDs might not
    metrics = reconciled(body).ctx.metrics
    labels = {"kind": "ModelDeployment", "namespace": NS, "name": "scorer"}
    assert sample(metrics, "mlplatform_resource_ready", **labels) == 0
    assert sample(metrics, "mlplatform_resource_phase", phase="Stalled", **labels) == 1


def test_a_deleted_resource_leaves_no_series():
    h = reconciled(FIXED)
    assert 'name="scorer"' in generate_latest(h.ctx.metrics.registry).decode()
    key = ("ModelDeployment", FIXED["metadata"]["namespace"], FIXED["metadata"]["name"])
    loop.enqueue(h.ctx, h.ctx.cache.remove("ModelDeployment", FIXED))  # the informer's DELETED
    assert h.ctx.queue.get(timeout=0) == key
    assert loop.process(h.ctx, key) is loop.Outcome.GONE  # the worker that finds it gone cleans up
    text = generate_latest(h.ctx.metrics.registry).decode()
    assert 'name="scorer"' not in text
    assert sample(h.ctx.metrics, "mlplatform_resources", kind="ModelDeployment", phase="Progressing") is None


# ------------------------------------------------------------------------ PromQL metric names

PROMQL_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool",
                   "offset", "atan2", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (functions, keywords, labels and durations left out)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)  # string literals
    expr = re.sub(r"\{[^}]*\}", " ", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", " ", expr)  # range and subquery windows, e.g. [$__rate_interval]
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", r" \1 ", expr)  # label lists
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", expr):
        if re.match(r"\s*(\(|by\b|without\b)", expr[match.end():]):
            continue  # a function, or an aggregation (`sum by (...) (...)`)
        if match.group(0).lower() in PROMQL_KEYWORDS or re.search(r"[0-9.]$", expr[:match.start()]):
            continue  # a keyword; the unit of a duration or the exponent of a number
        names.add(match.group(0))
    return names


@pytest.mark.parametrize("expr, names", [
    ('sum by (kind, result) (rate(mlplatform_reconcile_total{job=~"$job"}[$__rate_interval]))',
     {"mlplatform_reconcile_total"}),
    ("histogram_quantile(0.99, sum by (kind, le) (rate(x_bucket[5m]))) / on (kind) group_left (phase) y offset 1h",
     {"x_bucket", "y"}),
    ('absent(mlplatform_leader == 1) or up{job="a and b"} > 1e3 unless count_over_time(z[1h:5m]) and bool w',
     {"mlplatform_leader", "up", "z", "w"}),
])
def test_metric_names_are_read_from_promql(expr, names):
    assert metric_names(expr) == names


def exported_names() -> set[str]:
    """What /metrics can show: every family of a fully wired Metrics, with the suffixes of its type."""
    metrics = Metrics()
    metrics.observe_loop(WorkQueue(), Cache())
    suffixes = {"counter": ["_total"], "gauge": [""], "histogram": ["_bucket", "_sum", "_count"],
                "summary": ["", "_sum", "_count"], "info": ["_info"], "unknown": [""]}
    return {family.name + suffix for family in metrics.registry.collect() for suffix in suffixes[family.type]}


def dashboard_queries() -> list[tuple[str, str]]:
    """(where, PromQL) of every panel target and every query variable of the dashboard."""
    dashboard = json.loads(DASHBOARD.read_text())
    queries = []

    def walk(panels):
        for panel in panels:
            for target in panel.get("targets", []):
                queries.append((f"panel {panel['title']!r} {target['refId']}", target["expr"]))
            walk(panel.get("panels", []))

    walk(dashboard["panels"])
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
            match = re.fullmatch(r"label_values\((.+),\s*\w+\)", query)
            assert match, f"variable {variable['name']}: {query}"
            queries.append((f"variable {variable['name']}", match.group(1)))
    return queries


def rule_queries() -> list[tuple[str, str]]:
    return [(rule.get("alert") or rule["record"], rule["expr"])
            for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def test_dashboard_and_rules_use_only_exported_metrics():
    exported = exported_names() | PROMETHEUS_SERIES
    used = {}
    for where, expr in dashboard_queries() + rule_queries():
        names = metric_names(expr)
        assert names, f"{where}: no metric in {expr}"
        for name in names - exported:
            used.setdefault(name, []).append(where)
    assert not used, f"not exported by the operator: {used}"


def test_the_dashboard_shows_what_the_operator_and_the_workloads_report():
    used = set().union(*(metric_names(expr) for _, expr in dashboard_queries()))
    assert {"mlplatform_reconcile_total", "mlplatform_reconcile_errors_total",
            "mlplatform_reconcile_duration_seconds_bucket", "mlplatform_workqueue_depth",
            "mlplatform_workqueue_oldest_item_age_seconds", "mlplatform_leader", "mlplatform_resources",
            "mlplatform_featureview_staleness_seconds", "mlplatform_featureview_max_staleness_seconds",
            "mlplatform_modeldeployment_ready_replicas", "mlplatform_modeldeployment_desired_replicas",
            "mlplatform_trainingjob_runs"} <= used
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "mlplatform-operator"
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["query"] == "prometheus"
    ids = []

    def walk(panels):
        for panel in panels:
            ids.append(panel["id"])
            if panel["type"] != "row":
                assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
            walk(panel.get("panels", []))

    walk(dashboard["panels"])
    assert len(ids) == len(set(ids)), "panel ids are unique"


# ------------------------------------------------------------------------ promtool

def run(promtool: str, *args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([promtool, *args], capture_output=True, text=True, timeout=300, cwd=cwd)


def test_promtool_checks_the_rules(promtool):
    out = run(promtool, "check", "rules", "--lint=all", "--lint-fatal", str(RULES))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS: 6 rules found" in out.stdout


def test_promtool_tests_the_alerts(promtool):
    out = run(promtool, "test", "rules", str(RULES_TEST))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def alert_names() -> list[str]:
    return [rule["alert"] for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]
            if "alert" in rule]


def test_every_alert_has_cases_that_fire_and_cases_that_must_not():
    cases: dict[str, set[bool]] = {}
    for test in yaml.safe_load(RULES_TEST.read_text())["tests"]:
        for case in test.get("alert_rule_test", []):
            cases.setdefault(case["alertname"], set()).add(bool(case.get("exp_alerts")))
    assert set(alert_names()) == {"MlplatformOperatorDown", "MlplatformOperatorTargetDown", "MlplatformReconcileErrors",
                                  "MlplatformResourceNotReady", "MlplatformFeatureViewNotFresh",
                                  "MlplatformTrainingJobFailed"}
    assert {name: cases.get(name) for name in alert_names()} == {name: {True, False} for name in alert_names()}


@pytest.mark.parametrize("mutation, expr", [("never fires", "vector(1) == 0"), ("always fires", "vector(1)")])
@pytest.mark.parametrize("alert", alert_names())
def test_the_alert_tests_catch_a_broken_alert(promtool, tmp_path, alert, mutation, expr):
    """The same tests against a copy of the rules where one alert never (always) fires: they must fail."""
    rules = yaml.safe_load(RULES.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == alert:
                rule["expr"] = expr
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules))
    test = yaml.safe_load(RULES_TEST.read_text())
    test["rule_files"] = ["rules.yaml"]
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(test))
    out = run(promtool, "test", "rules", "test.yaml", cwd=tmp_path)
    assert out.returncode == 1 and alert in out.stdout + out.stderr, out.stdout + out.stderr


def test_promtool_parses_every_dashboard_query(promtool, tmp_path):
    """Each query as a recording rule (Grafana's $__rate_interval as 5m): promtool parses them all."""
    rules = [{"record": f"dashboard:query_{i}", "expr": expr.replace("$__rate_interval", "5m")}
             for i, (_, expr) in enumerate(dashboard_queries())]
    (tmp_path / "dashboard.yaml").write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    out = run(promtool, "check", "rules", str(tmp_path / "dashboard.yaml"))
    assert out.returncode == 0, out.stdout + out.stderr


# ------------------------------------------------------------------------ the chart

def test_chart_renders_neither_by_default(helm):
    kinds = {(o["kind"], o["metadata"]["name"]) for o in render(helm)}
    assert ("PrometheusRule", "mlplatform-operator") not in kinds
    assert ("ConfigMap", "mlplatform-operator-dashboards") not in kinds


def test_chart_prometheus_rule_is_the_rules_file(helm):
    objects = render(helm, "--set", "monitoring.prometheusRule.enabled=true",
                     "--set-json", "monitoring.prometheusRule.labels=" + json.dumps({"release": "prom"}))
    rule = only(objects, "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["labels"]["release"] == "prom"
    assert rule["spec"] == yaml.safe_load(RULES.read_text()), "the chart includes files/prometheus-rules.yaml as is"


def test_chart_dashboard_config_map_for_the_grafana_sidecar(helm):
    objects = render(helm, "--set", "monitoring.dashboard.enabled=true",
                     "--set", "monitoring.dashboard.annotations.grafana_folder=mlplatform")
    config_map = next(o for o in objects if o["kind"] == "ConfigMap"
                      and o["metadata"]["name"] == "mlplatform-operator-dashboards")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["metadata"]["annotations"] == {"grafana_folder": "mlplatform"}
    assert config_map["metadata"]["namespace"] == "mlplatform-system"
    assert json.loads(config_map["data"]["mlplatform.json"]) == json.loads(DASHBOARD.read_text())
    elsewhere = render(helm, "--set", "monitoring.dashboard.enabled=true",
                       "--set", "monitoring.dashboard.namespace=monitoring")
    assert next(o for o in elsewhere if o["metadata"]["name"] == "mlplatform-operator-dashboards")[
        "metadata"]["namespace"] == "monitoring"


def test_chart_lints_with_monitoring_on(helm):
    helm_run(helm, "lint", "--strict", str(CHART), "--set", "monitoring.dashboard.enabled=true",
             "--set", "monitoring.prometheusRule.enabled=true", "--set", "metrics.serviceMonitor.enabled=true")


def test_service_monitor_keeps_the_resources_namespace_label(helm):
    monitor = only(render(helm, "--set", "metrics.serviceMonitor.enabled=true"), "ServiceMonitor")
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["honorLabels"] is True
