"""The ModelDeployment reconciler on model signals, against the fake Kube: a KEDA ScaledObject instead of the HPA,
scaled to zero, Stalled without KEDA, and canaries judged from Prometheus (a fake client) or mirrored first."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from mlplatform.config import OperatorConfig
from mlplatform.controllers import canary as canary_controller
from mlplatform.runtime.prometheus import PrometheusError

from .test_argocd_health import health
from .test_reconcile_canary import GATEWAY, body, conditions_of, deployment, edit, ready, rollout, start
from .test_reconcilers import NS, Harness, model_deployment

PROM = "http://prometheus.monitoring.svc:9090"
ZERO = {"engine": "keda", "minReplicas": 0, "maxReplicas": 4, "idleSeconds": 60, "targets": {"concurrency": 4}}
MLSERVER = {"runtime": {"preset": "mlserver"}}


def with_prometheus(h: Harness) -> Harness:
    h.ctx.config = OperatorConfig(prometheus={"url": PROM})
    return h


def test_keda_engine_applies_a_scaled_object_and_creates_the_deployment_at_min_replicas():
    h = with_prometheus(Harness())
    h.add(model_deployment(autoscaling=ZERO, **MLSERVER))
    h.reconcile(body(h))
    so = h.kube.stored("keda.sh/v1alpha1", "ScaledObject", NS, "scorer")
    assert so is not None and so["spec"]["minReplicaCount"] == 0
    assert h.kube.stored("autoscaling/v2", "HorizontalPodAutoscaler", NS, "scorer") is None
    dep = deployment(h, "scorer")
    assert dep["spec"]["replicas"] == 0  # handed over at minReplicas without force: KEDA owns it from here
    assert not [c for c in h.kube.called("apply") if c.kind == "Deployment" and "replicas" in c.detail["spec"]]


def test_scaled_to_zero_is_ready_with_its_reason_and_summary():
    h = with_prometheus(Harness())
    h.add(model_deployment(autoscaling=ZERO, **MLSERVER))
    h.reconcile(body(h))
    dep = deployment(h, "scorer")
    dep["status"] = {"observedGeneration": dep["metadata"]["generation"], "replicas": 0}
    h.add(dep)
    h.reconcile(body(h))
    status = body(h)["status"]
    assert status["phase"] == "ScaledToZero"
    assert status["replicaSummary"] == "0/0 (scaled to zero)"
    ready_ = conditions_of(h)["Ready"]
    assert (ready_["status"], ready_["reason"]) == ("True", "ScaledToZero")
    # kstatus reads Current (Ready True, neither Reconciling nor Stalled); Argo CD says Healthy, with the message.
    assert conditions_of(h)["Reconciling"]["status"] == "False" and conditions_of(h)["Stalled"]["status"] == "False"
    argocd = health(body(h))
    assert argocd["status"] == "Healthy" and argocd["message"].startswith("no demand for autoscaling.idleSeconds")


def test_woken_by_keda_it_reports_the_replica_coming_up():
    h = with_prometheus(Harness())
    h.add(model_deployment(autoscaling=ZERO, **MLSERVER))
    h.reconcile(body(h))
    h.kube.update("apps/v1", "Deployment", NS, "scorer", manager="keda", spec={"replicas": 1})
    h.sync()
    h.reconcile(body(h))
    assert body(h)["status"]["phase"] == "Progressing" and body(h)["status"]["replicaSummary"] == "0/1"
    assert deployment(h, "scorer")["spec"]["replicas"] == 1  # the operator never takes it back


def test_without_keda_it_is_stalled_and_applies_nothing():
    h = with_prometheus(Harness())
    h.kube.unserved.add(("keda.sh/v1alpha1", "scaledobjects"))
    h.add(model_deployment(autoscaling=ZERO, **MLSERVER))
    h.reconcile(body(h))
    assert not h.kube.called("apply")
    status = body(h)["status"]
    assert status["phase"] == "Stalled"
    stalled = conditions_of(h)["Stalled"]
    assert (stalled["status"], stalled["reason"]) == ("True", "KEDANotInstalled")
    assert "KEDA (keda.sh/v1alpha1 ScaledObject) is not installed" in stalled["message"]
    assert h.ctx.queue.stats()[0] == 1  # looked at again: KEDA may be installed later


def test_prometheus_targets_without_prometheus_in_the_config_are_stalled_naming_it():
    h = Harness()
    h.add(model_deployment(autoscaling=ZERO, **MLSERVER))
    h.reconcile(body(h))
    stalled = conditions_of(h)["Stalled"]
    assert (stalled["status"], stalled["reason"]) == ("True", "PrometheusNotConfigured")
    assert "prometheus.url" in stalled["message"]


# --- canary analysis ----------------------------------------------------------------------------

class FakePrometheus:
    def __init__(self, values: dict[str, float | None] | Exception):
        self.values = values
        self.queries: list[str] = []

    def query(self, promql: str) -> float | None:
        self.queries.append(promql)
        if isinstance(self.values, Exception):
            raise self.values
        return next((v for k, v in self.values.items() if k in promql), None)


@pytest.fixture
def prometheus(monkeypatch):
    def install(values) -> FakePrometheus:
        fake = FakePrometheus(values)
        monkeypatch.setattr(canary_controller, "client_for", lambda url, timeout: fake)
        return fake
    return install


def analysed(steps: list[int], **analysis) -> dict:
    return {"canary": {"steps": steps, "stepSeconds": 0,
                       "analysis": {"maxErrorRate": 0.01, "maxLatencyMs": 250, "intervalSeconds": 30, **analysis}}}


def backdate(h: Harness, seconds: float, *fields: str) -> None:
    """status.rollout's times moved back, as if that long had passed (the reconciler reads the wall clock)."""
    md = body(h)
    for name in fields:
        value = md["status"]["rollout"].get(name)
        if value:
            when = datetime.fromisoformat(value.replace("Z", "+00:00")) - timedelta(seconds=seconds)
            md["status"]["rollout"][name] = when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    h.add(md)


def canary_holding(h_extra: dict, rollout_spec: dict) -> Harness:
    h_extra = {**MLSERVER, **h_extra}
    h = with_prometheus(start(h_extra))
    edit(h, "s3://models/churn/v4/", 2, replicas=4, rollout=rollout_spec, **h_extra)
    ready(h, "scorer-canary")
    h.reconcile(body(h))  # step 1 routed: its hold and its first check's interval begin
    assert rollout(h)["canaryWeight"] == rollout_spec["canary"]["steps"][0]
    return h


def test_a_canary_over_its_error_bound_is_aborted_with_analysis_failed(prometheus):
    fake = prometheus({"status_code": 0.2, "histogram_quantile": 120.0})
    h = canary_holding({}, analysed([50]))
    labels = deployment(h, "scorer-canary")["spec"]["template"]["metadata"]["labels"]
    assert labels["mlplatform.dev/version"] == "canary"  # the series the analysis selects
    assert deployment(h, "scorer")["spec"]["template"]["metadata"]["labels"]["mlplatform.dev/version"] == "stable"
    h.reconcile(body(h))
    assert not fake.queries  # not due before intervalSeconds
    backdate(h, 31, "stepStartTime")
    h.reconcile(body(h))
    status = rollout(h)
    assert status["phase"] == "Aborted" and status["reason"] == "AnalysisFailed", status
    assert "error rate 0.2 > maxErrorRate 0.01" in status["message"]
    aborted = conditions_of(h)["RolloutAborted"]
    assert (aborted["status"], aborted["reason"]) == ("True", "AnalysisFailed")
    assert deployment(h, "scorer-canary") is None
    assert any('mlplatform_dev_version="canary"' in q for q in fake.queries)


def test_a_canary_within_bounds_is_promoted(prometheus):
    fake = prometheus({"status_code": 0.001, "histogram_quantile": 120.0})
    h = canary_holding({}, analysed([50]))
    backdate(h, 31, "stepStartTime")
    h.reconcile(body(h))
    assert len(fake.queries) == 2
    assert rollout(h)["phase"] == "Promoting" and rollout(h)["analysis"]["failedChecks"] == 0
    ready(h, "scorer")
    h.reconcile(body(h))
    assert rollout(h)["phase"] == "Promoted"


def test_prometheus_unreachable_is_no_data_and_counts_as_failed(prometheus):
    prometheus(PrometheusError("http://prometheus.monitoring.svc:9090: timed out"))
    h = canary_holding({}, analysed([50], maxLatencyMs=None, failureLimit=1))
    backdate(h, 31, "stepStartTime")
    h.reconcile(body(h))
    assert rollout(h)["reason"] == "AnalysisFailed"
    assert "error rate: no data (query failed: http://prometheus.monitoring.svc:9090: timed out)" in rollout(h)["message"]


def test_the_check_state_survives_between_reconciles_and_failures_accumulate(prometheus):
    prometheus({"status_code": 0.5, "histogram_quantile": 120.0})
    h = canary_holding({}, analysed([50], failureLimit=2))
    backdate(h, 31, "stepStartTime")
    h.reconcile(body(h))
    assert rollout(h)["phase"] == "Progressing" and rollout(h)["analysis"]["failedChecks"] == 1
    backdate(h, 31, "stepStartTime", "lastCheckTime")
    md = body(h)
    last = md["status"]["rollout"]["analysis"]["lastCheckTime"]
    md["status"]["rollout"]["analysis"]["lastCheckTime"] = (
        datetime.fromisoformat(last.replace("Z", "+00:00")) - timedelta(seconds=31)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    h.add(md)
    h.reconcile(body(h))
    assert rollout(h)["phase"] == "Aborted" and rollout(h)["analysis"]["failedChecks"] == 2


# --- mirroring ----------------------------------------------------------------------------------

def route(h: Harness) -> dict:
    return h.kube.stored("gateway.networking.k8s.io/v1", "HTTPRoute", NS, "scorer")


def test_requests_are_mirrored_to_the_canary_before_step_one_then_the_filter_is_gone():
    h = start({"gateway": GATEWAY})
    mirrored = {"canary": {"steps": [10, 50], "stepSeconds": 0, "mirrorPercent": 100, "mirrorSeconds": 60}}
    edit(h, "s3://models/churn/v4/", 2, replicas=4, rollout=mirrored, gateway=GATEWAY)
    ready(h, "scorer-canary")
    h.reconcile(body(h))
    rule = route(h)["spec"]["rules"][0]
    assert rule["filters"] == [{"type": "RequestMirror", "requestMirror": {
        "backendRef": {"group": "", "kind": "Service", "name": "scorer-canary", "port": 80}, "percent": 100}}]
    assert [(b["name"], b["weight"]) for b in rule["backendRefs"]] == [("scorer", 100), ("scorer-canary", 0)]
    assert "mirroring 100%" in rollout(h)["message"]
    backdate(h, 61, "mirrorStartTime")
    h.reconcile(body(h))
    rule = route(h)["spec"]["rules"][0]
    assert "filters" not in rule
    assert rollout(h)["mirrorEndTime"] and rollout(h)["canaryWeight"] >= 10


def test_the_workload_keeps_no_replicas_field_of_ours_under_keda():
    h = with_prometheus(Harness())
    h.add(model_deployment(autoscaling={**ZERO, "minReplicas": 1}, **MLSERVER))
    h.reconcile(body(h))
    applied = [c.detail for c in h.kube.called("apply") if c.kind == "Deployment"]
    assert applied and all("replicas" not in a["spec"] for a in applied)
