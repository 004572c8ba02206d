"""Serving on model signals, the pure tiers: PromQL per preset and target, the autoscaler child (HPA or KEDA
ScaledObject), scraping, availability defaults, refusals, and the canary analysis decisions."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

from mlplatform.api.modeldeployment import ModelDeploymentSpec
from mlplatform.api.validation import validate_document
from mlplatform.config import OperatorConfig
from mlplatform.render.common import Owner, RenderError
from mlplatform.render.modeldeployment import render_model_deployment
from mlplatform.render.promql import error_rate_query, latency_p99_ms_query, target_query, with_matchers
from mlplatform.rollout import (
    ABORTED,
    PROGRESSING,
    PROMOTING,
    AnalysisPolicy,
    CanaryPolicy,
    Reading,
    RolloutInputs,
    analysis_due,
    judge,
    plan_rollout,
)

from .gateway_schema import validate_httproute
from .keda_schema import validate_scaled_object

PROM = "http://prometheus.monitoring.svc:9090"
CONFIG = OperatorConfig(prometheus={"url": PROM})
OWNER = Owner("ModelDeployment", "llm", "team", uid="u1", generation=1)
LLM = {"model": {"uri": "hf://meta-llama/Llama-3.1-8B-Instruct", "format": "huggingface"},
       "runtime": {"preset": "vllm"}, "resources": {"gpu": {"count": 1}}}
SEL = 'namespace="team",app_kubernetes_io_instance="llm"'
CANARY_SEL = SEL + ',mlplatform_dev_version="canary"'


def spec(**extra) -> ModelDeploymentSpec:
    return ModelDeploymentSpec.model_validate({**LLM, **extra})


def render(config: OperatorConfig = CONFIG, **extra) -> dict[str, dict]:
    out = render_model_deployment(OWNER, spec(**extra), config, "hf://meta-llama/Llama-3.1-8B-Instruct")
    return {o["kind"]: o for o in out.objects}


def keda(**autoscaling) -> dict:
    return {"autoscaling": {"engine": "keda", "minReplicas": 1, "maxReplicas": 8, **autoscaling}}


# --- PromQL per preset and target -----------------------------------------------------------------

@pytest.mark.parametrize(("preset", "target", "query"), [
    ("vllm", "queue_depth", f"sum(vllm:num_requests_waiting{{{SEL}}})"),
    ("vllm", "kv_cache_utilization", f"sum(vllm:kv_cache_usage_perc{{{SEL}}}) * 100"),
    ("vllm", "concurrency", f"sum(vllm:num_requests_running{{{SEL}}})"),
    ("vllm", "requests_per_second", f"sum(rate(http_requests_total{{{SEL}}}[1m]))"),
    ("triton", "queue_depth", f"sum(nv_inference_pending_request_count{{{SEL}}})"),
    ("triton", "requests_per_second",
     f'sum(rate({{__name__=~"nv_inference_request_success|nv_inference_request_failure",{SEL}}}[1m]))'),
    ("torchserve", "requests_per_second", f"sum(rate(ts_inference_requests_total{{{SEL}}}[1m]))"),
    ("mlserver", "concurrency", f"sum(rest_server_requests_in_progress{{{SEL}}})"),
    ("mlserver", "requests_per_second", f"sum(rate(rest_server_requests_total{{{SEL}}}[1m]))"),
    ("vllm", "gpu_utilization", 'sum(avg by (pod) (DCGM_FI_DEV_GPU_UTIL{namespace="team",pod=~"llm-[a-z0-9]+(-[a-z0-9]+)?"}))'),
])
def test_target_queries_per_preset(preset, target, query):
    assert target_query(CONFIG, preset, target, "team", "llm") == query


@pytest.mark.parametrize(("preset", "target", "field"), [
    ("triton", "kv_cache_utilization", "kvCache"),
    ("torchserve", "queue_depth", "queue"),
    ("sklearn", "concurrency", "inFlight"),
    ("xgboost", "requests_per_second", "requests"),
])
def test_a_signal_the_preset_does_not_expose_is_refused_naming_the_target(preset, target, field):
    with pytest.raises(RenderError) as err:
        target_query(CONFIG, preset, target, "team", "llm")
    assert err.value.field.startswith("spec.autoscaling.targets.") and f"runtimes.{preset}.metrics.{field}" in str(err.value)


@pytest.mark.parametrize(("preset", "errors", "requests"), [
    ("vllm", f'http_requests_total{{status="5xx",{CANARY_SEL}}}', f"http_requests_total{{{CANARY_SEL}}}"),
    ("triton", f"nv_inference_request_failure{{{CANARY_SEL}}}",
     f'{{__name__=~"nv_inference_request_success|nv_inference_request_failure",{CANARY_SEL}}}'),
    ("torchserve", f"Requests5XX{{{CANARY_SEL}}}", f"ts_inference_requests_total{{{CANARY_SEL}}}"),
    ("mlserver", f'rest_server_requests_total{{status_code=~"5..",{CANARY_SEL}}}',
     f"rest_server_requests_total{{{CANARY_SEL}}}"),
])
def test_error_rate_of_the_canary_per_preset(preset, errors, requests):
    assert error_rate_query(CONFIG, preset, "team", "llm", 30) == \
        f"sum(rate({errors}[30s])) / sum(rate({requests}[30s]))"


@pytest.mark.parametrize(("preset", "buckets", "scale"), [
    ("vllm", "vllm:e2e_request_latency_seconds_bucket", "1000"),
    ("mlserver", "rest_server_request_duration_seconds_bucket", "1000"),
    ("sklearn", "request_predict_seconds_bucket", "1000"),
])
def test_p99_latency_of_the_canary_in_milliseconds(preset, buckets, scale):
    assert latency_p99_ms_query(CONFIG, preset, "team", "llm", 60) == \
        f"histogram_quantile(0.99, sum by (le) (rate({buckets}{{{CANARY_SEL}}}[60s]))) * {scale}"


def test_matchers_join_any_selector_form():
    assert with_matchers("m", {"a": "b"}) == 'm{a="b"}'
    assert with_matchers('m{x="y"}', {"a": 'q"'}) == 'm{x="y",a="q\\""}'
    assert with_matchers("m{}", {"a": "b"}) == 'm{a="b"}'


# --- the autoscaler child -------------------------------------------------------------------------

def test_keda_engine_renders_a_scaled_object_instead_of_the_hpa_and_leaves_replicas_to_it():
    objects = render(**keda(targets={"queueDepth": 4, "kvCacheUtilization": 80, "cpuUtilization": 70}))
    assert "HorizontalPodAutoscaler" not in objects
    assert "replicas" not in objects["Deployment"]["spec"]
    so = objects["ScaledObject"]
    validate_scaled_object(so)
    assert so["apiVersion"] == "keda.sh/v1alpha1"
    assert so["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "llm"}
    assert (so["spec"]["minReplicaCount"], so["spec"]["maxReplicaCount"]) == (1, 8)
    triggers = {t.get("name", t["type"]): t for t in so["spec"]["triggers"]}
    assert triggers["cpu"] == {"type": "cpu", "metricType": "Utilization", "metadata": {"value": "70"}}
    queue = triggers["queue-depth"]
    assert queue["metadata"]["serverAddress"] == PROM and queue["metadata"]["threshold"] == "4"
    assert queue["metadata"]["query"] == f"sum(vllm:num_requests_waiting{{{SEL}}})"
    assert triggers["kv-cache-utilization"]["metadata"]["threshold"] == "80"
    assert "wake" not in triggers


def test_scale_to_zero_adds_the_wake_trigger_and_cools_down_for_idle_seconds():
    so = render(**keda(minReplicas=0, idleSeconds=120, targets={"queueDepth": 4}))["ScaledObject"]
    validate_scaled_object(so)
    assert so["spec"]["minReplicaCount"] == 0 and so["spec"]["cooldownPeriod"] == 120
    wake = next(t for t in so["spec"]["triggers"] if t.get("name") == "wake")
    assert wake["metadata"]["query"] == \
        'sum(envoy_cluster_upstream_rq_pending_active{envoy_cluster_name=~"httproute/team/llm/rule/.*"})'
    assert wake["metadata"]["activationThreshold"] == "0"


def test_idle_seconds_defaults_to_300():
    so = render(**keda(minReplicas=0, targets={"concurrency": 8}))["ScaledObject"]
    assert so["spec"]["cooldownPeriod"] == 300


def test_multi_node_scaled_object_targets_the_leader_worker_set():
    objects = render(resources={"gpu": {"count": 8}}, nodesPerReplica=2,
                     runtime={"preset": "vllm", "parallelism": {"tensor": 8, "pipeline": 2}},
                     **keda(targets={"queueDepth": 4}))
    so = objects["ScaledObject"]
    validate_scaled_object(so)
    assert so["spec"]["scaleTargetRef"]["kind"] == "LeaderWorkerSet"


def test_hpa_engine_reads_the_adapter_metric_names_of_prometheus_targets():
    hpa = render(autoscaling={"minReplicas": 1, "maxReplicas": 4,
                              "targets": {"queueDepth": 4, "concurrency": 16}})["HorizontalPodAutoscaler"]
    assert [(m["pods"]["metric"]["name"], m["pods"]["target"]["averageValue"]) for m in hpa["spec"]["metrics"]] == \
        [("mlplatform_queue_depth", "4"), ("mlplatform_concurrency", "16")]


# --- refusals -------------------------------------------------------------------------------------

def md_doc(**extra) -> dict:
    return {"apiVersion": "mlplatform.dev/v1alpha1", "kind": "ModelDeployment",
            "metadata": {"name": "llm", "namespace": "team"}, "spec": {**LLM, **extra}}


@pytest.mark.parametrize(("extra", "path", "text"), [
    ({"autoscaling": {"minReplicas": 0, "maxReplicas": 2, "targets": {"queueDepth": 1}}},
     "spec.autoscaling.minReplicas", "needs autoscaling.engine: keda"),
    ({"rollout": {"canary": {"steps": [10], "mirrorPercent": 50}}},
     "spec.rollout.canary.mirrorPercent", "needs spec.gateway"),
    ({"rollout": {"canary": {"steps": [10], "analysis": {"intervalSeconds": 30}}}},
     "spec.rollout.canary.analysis", "needs maxErrorRate or maxLatencyMs"),
    ({"gateway": {"parentRefs": [{"name": "gw"}]}, "rollout": {"canary": {"steps": [10], "mirrorSeconds": 30}}},
     "spec.rollout.canary.mirrorSeconds", "needs rollout.canary.mirrorPercent"),
])
def test_refused_naming_the_field(extra, path, text):
    resource, problems = validate_document(md_doc(**extra))
    assert resource is None
    assert any(str(p).startswith(f"{path}:") and text in str(p) for p in problems), problems


@pytest.mark.parametrize(("extra", "field"), [
    (keda(targets={"queueDepth": 4}), "spec.autoscaling"),
    (keda(minReplicas=0, targets={"cpuUtilization": 50}), "spec.autoscaling"),
    ({"rollout": {"canary": {"steps": [10], "analysis": {"maxErrorRate": 0.01}}}}, "spec.rollout.canary.analysis"),
])
def test_prometheus_signals_without_prometheus_in_the_config_are_refused(extra, field):
    with pytest.raises(RenderError) as err:
        render(OperatorConfig(), **extra)
    assert err.value.field == field and "prometheus.url" in err.value.message
    assert err.value.reason == "PrometheusNotConfigured"


def test_analysis_of_latency_on_a_preset_without_a_histogram_is_refused():
    with pytest.raises(RenderError) as err:
        render(runtime={"preset": "triton"}, model={"uri": "s3://m/", "format": "onnx"},
               rollout={"canary": {"steps": [10], "analysis": {"maxLatencyMs": 200}}})
    assert err.value.field == "spec.rollout.canary.analysis.maxLatencyMs"


# --- scraping and availability ------------------------------------------------------------------

def pod_template(objects: dict) -> dict:
    return objects["Deployment"]["spec"]["template"]


def test_model_pods_carry_scrape_annotations_and_the_version_label():
    template = pod_template(render(replicas=2))
    assert template["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    assert template["metadata"]["annotations"]["prometheus.io/port"] == "8000"
    assert template["metadata"]["annotations"]["prometheus.io/path"] == "/metrics"
    assert template["metadata"]["labels"]["mlplatform.dev/version"] == "stable"


def test_a_pod_monitor_instead_when_the_config_says_so():
    config = OperatorConfig(prometheus={"url": PROM, "podMonitors": True})
    objects = render(config, runtime={"preset": "mlserver"}, model={"uri": "s3://m/", "format": "sklearn"})
    assert "prometheus.io/scrape" not in (pod_template(objects)["metadata"].get("annotations") or {})
    monitor = objects["PodMonitor"]
    assert monitor["spec"]["podMetricsEndpoints"] == [{"port": "metrics", "path": "/metrics"}]
    assert monitor["spec"]["podTargetLabels"] == ["app.kubernetes.io/instance", "mlplatform.dev/version"]
    ports = pod_template(objects)["spec"]["containers"][0]["ports"]
    assert {"name": "metrics", "containerPort": 8082, "protocol": "TCP"} in ports


def test_replicas_spread_over_zones_and_nodes_only_when_there_are_several():
    spread = pod_template(render(replicas=3))["spec"]["topologySpreadConstraints"]
    assert [(c["topologyKey"], c["whenUnsatisfiable"], c["maxSkew"]) for c in spread] == \
        [("topology.kubernetes.io/zone", "ScheduleAnyway", 1), ("kubernetes.io/hostname", "ScheduleAnyway", 1)]
    assert spread[0]["labelSelector"]["matchLabels"]["app.kubernetes.io/instance"] == "llm"
    assert "topologySpreadConstraints" not in pod_template(render(replicas=1))["spec"]
    autoscaled = render(autoscaling={"minReplicas": 1, "maxReplicas": 3, "targets": {"cpuUtilization": 60}})
    assert len(pod_template(autoscaled)["spec"]["topologySpreadConstraints"]) == 2


@pytest.mark.parametrize(("preset", "model", "path", "drain", "grace"), [
    ("vllm", {"uri": "hf://m/x", "format": "huggingface"}, "/health", 30, 300),
    ("triton", {"uri": "s3://m/", "format": "onnx"}, "/v2/health/live", 20, 120),
    ("mlserver", {"uri": "s3://m/", "format": "sklearn"}, "/v2/health/live", 10, 60),
])
def test_liveness_drain_and_grace_come_from_the_preset(preset, model, path, drain, grace):
    pod = pod_template(render(runtime={"preset": preset}, model=model))["spec"]
    server = pod["containers"][0]
    assert server["livenessProbe"]["httpGet"]["path"] == path
    assert server["lifecycle"] == {"preStop": {"sleep": {"seconds": drain}}}
    assert pod["terminationGracePeriodSeconds"] == grace


# --- canary analysis decisions ------------------------------------------------------------------

T0 = datetime(2026, 12, 6, 9, 0, tzinfo=timezone.utc)
ISO = "%Y-%m-%dT%H:%M:%S.%fZ"


def reading(metric: str, bound: float, value: float | None) -> Reading:
    return Reading(metric, "maxErrorRate" if metric == "error rate" else "maxLatencyMs", bound, value)


@pytest.mark.parametrize(("readings", "passed", "text"), [
    ((reading("error rate", 0.01, 0.001), reading("p99 latency (ms)", 250, 120)), True,
     "error rate 0.001 <= maxErrorRate 0.01; p99 latency (ms) 120 <= maxLatencyMs 250"),
    ((reading("error rate", 0.01, 0.2),), False, "error rate 0.2 > maxErrorRate 0.01"),
    ((reading("p99 latency (ms)", 250, 900),), False, "p99 latency (ms) 900 > maxLatencyMs 250"),
    ((reading("error rate", 0.01, None),), False, "error rate: no data (the query returned nothing), counted as failed"),
    ((reading("error rate", 0.01, 0.01),), True, "error rate 0.01 <= maxErrorRate 0.01"),
])
def test_judge(readings, passed, text):
    result = judge(readings)
    assert (result.passed, result.message) == (passed, text)


POLICY = CanaryPolicy((50,), step_seconds=0, analysis=AnalysisPolicy(max_error_rate=0.01, interval_seconds=30,
                                                                      failure_limit=2))


def holding(**extra) -> dict:
    return {"phase": PROGRESSING, "step": 1, "canaryWeight": 50, "canaryHash": "new", "stableHash": "old",
            "stepStartTime": T0.strftime(ISO), **extra}


def inputs(previous: dict, now: datetime, readings=None, policy: CanaryPolicy = POLICY) -> RolloutInputs:
    return RolloutInputs(policy=policy, desired_hash="new", desired_model_uri="s3://m/2", stable_hash="old",
                         stable_model_uri="s3://m/1", previous=previous, canary_ready_replicas=1, total_replicas=2,
                         exact_weights=True, now=now, readings=readings)


@pytest.mark.parametrize(("previous", "seconds", "due"), [
    (holding(), 10, False),
    (holding(), 30, True),
    (holding(analysis={"lastCheckTime": (T0 + timedelta(seconds=30)).strftime(ISO)}), 45, False),
    (holding(analysis={"lastCheckTime": (T0 + timedelta(seconds=30)).strftime(ISO)}), 60, True),
    (holding(canaryWeight=0), 60, False),
    (holding(canaryHash="other"), 60, False),
    (holding(phase=ABORTED), 60, False),
    (holding(phase="Paused"), 60, False),
])
def test_analysis_is_due_an_interval_after_the_step_began_or_the_last_check(previous, seconds, due):
    assert analysis_due(POLICY, previous, "new", T0 + timedelta(seconds=seconds)) is due


def test_a_failed_check_below_the_limit_holds_the_step():
    decision = plan_rollout(inputs(holding(), T0 + timedelta(seconds=30), (reading("error rate", 0.01, 0.2),)))
    assert decision.status["phase"] == PROGRESSING and decision.canary
    assert decision.status["analysis"]["failedChecks"] == 1 and decision.status["analysis"]["lastPassed"] is False
    assert "waiting for a passing analysis check" in decision.status["message"]


def test_failed_checks_at_the_limit_abort_naming_metric_bound_and_value():
    previous = holding(analysis={"checks": 1, "failedChecks": 1, "lastPassed": False,
                                 "lastCheckTime": (T0 + timedelta(seconds=30)).strftime(ISO)})
    decision = plan_rollout(inputs(previous, T0 + timedelta(seconds=60), (reading("error rate", 0.01, 0.2),)))
    assert decision.status["phase"] == ABORTED and decision.status["reason"] == "AnalysisFailed"
    assert not decision.canary and decision.weight == 0
    assert "analysis failed 2 of 2 check(s) (failureLimit 2): error rate 0.2 > maxErrorRate 0.01" in decision.aborted


def test_no_data_is_a_failed_check_and_says_so():
    policy = CanaryPolicy((50,), step_seconds=0, analysis=AnalysisPolicy(max_error_rate=0.01, failure_limit=1))
    decision = plan_rollout(inputs(holding(), T0 + timedelta(seconds=30), (reading("error rate", 0.01, None),), policy))
    assert decision.status["reason"] == "AnalysisFailed" and "no data" in decision.status["message"]


def test_a_passing_check_at_the_last_step_promotes():
    decision = plan_rollout(inputs(holding(), T0 + timedelta(seconds=30), (reading("error rate", 0.01, 0.0),)))
    assert decision.status["phase"] == PROMOTING
    assert decision.status["analysis"]["checks"] == 1 and decision.status["analysis"]["failedChecks"] == 0


def test_mirroring_holds_before_step_one_then_ends():
    policy = CanaryPolicy((10, 50), step_seconds=60, mirror_percent=100, mirror_seconds=120)
    previous = {"phase": PROGRESSING, "step": 1, "canaryWeight": 0, "canaryHash": "new", "stableHash": "old"}
    first = plan_rollout(inputs(previous, T0, policy=policy))
    assert (first.mirror_percent, first.weight, first.status["mirrorStartTime"]) == (100, 0, T0.strftime(ISO))
    assert first.requeue_after == 120
    later = plan_rollout(inputs(first.status, T0 + timedelta(seconds=121), policy=policy))
    assert later.mirror_percent == 0 and later.weight == 10
    assert later.status["mirrorEndTime"] == (T0 + timedelta(seconds=121)).strftime(ISO)
    again = plan_rollout(inputs(later.status, T0 + timedelta(seconds=130), policy=policy))
    assert again.mirror_percent == 0 and again.status["mirrorStartTime"] == T0.strftime(ISO)


def test_the_mirror_filter_on_the_route_validates_against_the_gateway_api():
    from mlplatform.api.modeldeployment import Gateway
    from mlplatform.render.gateway import http_route
    route = http_route(OWNER, Gateway.model_validate({"parentRefs": [{"name": "gw"}]}), "predictor", 80, 0, 100)
    validate_httproute(route)
    assert route["spec"]["rules"][0]["filters"] == [{"type": "RequestMirror", "requestMirror": {
        "backendRef": {"group": "", "kind": "Service", "name": "llm-canary", "port": 80}, "percent": 100}}]


def test_validate_with_a_config_refuses_prometheus_signals_it_cannot_serve(tmp_path):
    from .test_cli import mlplatform
    example = "examples/modeldeployment-llm-keda.yaml"
    without = tmp_path / "without.yaml"
    without.write_text("defaults: {clusterDomain: cluster.local}\n")
    refused = mlplatform("validate", "-f", example, "--config", str(without))
    assert refused.returncode == 1
    assert "spec.rollout.canary.analysis: needs prometheus.url in the operator configuration" in refused.stderr
    with_prom = tmp_path / "with.yaml"
    with_prom.write_text(f"prometheus: {{url: {PROM}}}\n")
    assert mlplatform("validate", "-f", example, "--config", str(with_prom)).returncode == 0


# --- prometheus-adapter rules (engine hpa) --------------------------------------------------------

ADAPTER_RULES = Path(__file__).resolve().parents[1] / "charts" / "mlplatform" / "files" / "prometheus-adapter-rules.yaml"


def test_the_charts_adapter_rules_are_generated_from_the_default_config():
    from mlplatform.render.adapter_rules import rules_file
    assert ADAPTER_RULES.read_text() == rules_file(OperatorConfig()), \
        "run: .venv/bin/python -m mlplatform.render.adapter_rules > charts/mlplatform/files/prometheus-adapter-rules.yaml"


def test_adapter_rules_name_the_metrics_the_hpa_reads():
    from mlplatform.render.adapter_rules import adapter_rules
    config = OperatorConfig()
    rules = {r["name"]["as"]: r for r in adapter_rules(config)["rules"]}
    assert set(rules) == {config.metrics.queue_depth, config.metrics.kv_cache_utilization, config.metrics.concurrency,
                          config.metrics.requests_per_second, config.metrics.gpu_utilization}
    assert rules["mlplatform_kv_cache_utilization"]["metricsQuery"] == \
        "sum(vllm:kv_cache_usage_perc{<<.LabelMatchers>>}) by (<<.GroupBy>>) * 100"
    assert "vllm:num_requests_waiting" in rules["mlplatform_queue_depth"]["seriesQuery"]


def test_the_chart_ships_the_adapter_rules_when_asked(helm):
    from .test_monitoring import render as render_chart
    objects = render_chart(helm, "--set", "monitoring.adapterRules.enabled=true")
    config_map = next(o for o in objects if o["metadata"]["name"].endswith("-prometheus-adapter-rules"))
    assert yaml.safe_load(config_map["data"]["config.yaml"]) == yaml.safe_load(ADAPTER_RULES.read_text())
    assert not [o for o in render_chart(helm) if o["metadata"]["name"].endswith("-prometheus-adapter-rules")]

