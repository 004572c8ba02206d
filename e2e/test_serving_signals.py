"""Serving on real signals: the operator's KEDA ScaledObject and canary analysis against the real Prometheus and
KEDA of the local control plane, model metrics from the simulated per-pod exporter (fixtures `prometheus`, `keda`,
`model_metrics` of the harness: model_metrics.set(namespace, pod, metric, value, labels) publishes a series with
the pod's namespace, name and labels, which Prometheus scrapes for real; set_series one of no pod).

- queue depth rising scales 1 -> N through the KEDA-created HPA, and back;
- idle -> 0 (Ready, reason ScaledToZero, "0/0 (scaled to zero)"), demand at the gateway -> 1;
- a canary whose 5xx rate is over its bound is aborted with AnalysisFailed; one within bounds is promoted.
"""
from __future__ import annotations

import threading

import pytest
import yaml

from harness import E2E_OPERATOR_CONFIG, ROOT, Operator, condition, get_cr, resource

FIELD_MANAGER = "argocd-controller"
WAKE_METRIC = "mlplatform_e2e_gateway_pending_requests"


@pytest.fixture(scope="module")
def signals_operator(kubeconfig, crds, keda, prometheus, no_session_operator, tmp_path_factory):
    """An operator that knows the Prometheus KEDA and the analysis query; the gateway's pending requests are the
    exporter's series for a pseudo-pod `<model>-gateway` (no Gateway data plane runs here)."""
    config = tmp_path_factory.mktemp("signals") / "config.yaml"
    config.write_text(yaml.safe_dump({
        **E2E_OPERATOR_CONFIG,
        "prometheus": {"url": prometheus.url,
                       "wakeQuery": f'sum({WAKE_METRIC}{{namespace="{{namespace}}",pod="{{route}}-gateway"}})'},
        "defaults": {"kedaPollingIntervalSeconds": 2}}))
    process = Operator(kubeconfig, ROOT / ".run" / "e2e-signals-operator.log")
    process.start(config)
    yield process
    process.stop()


def apply(kubectl, name: str, spec: dict, namespace: str) -> None:
    kubectl.run("apply", "--server-side", f"--field-manager={FIELD_MANAGER}", "--force-conflicts", "-n", namespace,
                "-f", "-", stdin=yaml.safe_dump(resource("ModelDeployment", name, spec)))


def llm(uri: str = "hf://acme/chat-v1", **extra) -> dict:
    return {"model": {"uri": uri, "format": "huggingface"}, "runtime": {"preset": "vllm"},
            "resources": {"cpu": "100m", "memory": "128Mi"}, **extra}


def replicas(apps_v1, namespace: str, name: str) -> int:
    return apps_v1.read_namespaced_deployment(name, namespace).spec.replicas


def pods(core_v1, namespace: str, selector: str) -> list[str]:
    return [p.metadata.name for p in core_v1.list_namespaced_pod(namespace, label_selector=selector).items
            if p.status.phase == "Running" and not p.metadata.deletion_timestamp]


def md_status(custom, namespace: str, name: str) -> dict:
    return get_cr(custom, "ModelDeployment", namespace, name).get("status") or {}


def test_queue_depth_scales_out_through_keda_and_back(signals_operator, kubectl, apps_v1, core_v1, custom,
                                                      model_metrics, namespace, wait_for):
    autoscaling = {"engine": "keda", "minReplicas": 1, "maxReplicas": 3, "scaleDownStabilizationSeconds": 0,
                   "targets": {"queueDepth": 2}}
    apply(kubectl, "chat", llm(autoscaling=autoscaling), namespace)
    first = wait_for(lambda: pods(core_v1, namespace, "app.kubernetes.io/instance=chat") or None, timeout=90,
                     what="one running pod")
    model_metrics.set(namespace, first[0], "vllm:num_requests_waiting", 10)  # ceil(10 / 2) = 5, capped at 3
    wait_for(lambda: replicas(apps_v1, namespace, "chat") == 3, timeout=120, what="3 replicas")
    assert custom.get_namespaced_custom_object("keda.sh", "v1alpha1", namespace, "scaledobjects", "chat")
    model_metrics.set(namespace, first[0], "vllm:num_requests_waiting", 0)
    wait_for(lambda: replicas(apps_v1, namespace, "chat") == 1, timeout=120, what="back to 1 replica")


def test_idle_goes_to_zero_and_demand_wakes_it(signals_operator, kubectl, apps_v1, custom, model_metrics,
                                               namespace, wait_for):
    autoscaling = {"engine": "keda", "minReplicas": 0, "maxReplicas": 2, "idleSeconds": 5,
                   "targets": {"queueDepth": 2}}
    apply(kubectl, "chat", llm(autoscaling=autoscaling), namespace)
    zero = wait_for(lambda: (lambda s: s if s.get("phase") == "ScaledToZero" else None)(
        md_status(custom, namespace, "chat")), timeout=90, what="ScaledToZero")
    assert zero["replicaSummary"] == "0/0 (scaled to zero)"
    ready = condition({"status": zero}, "Ready")
    assert (ready["status"], ready["reason"]) == ("True", "ScaledToZero")

    gateway = {"namespace": namespace, "pod": "chat-gateway"}  # a series of no pod: the gateway's pending requests
    model_metrics.set_series(WAKE_METRIC, gateway, 3)
    wait_for(lambda: (lambda s: s if s.get("replicaSummary") == "1/1" else None)(md_status(custom, namespace, "chat")),
             timeout=120, what="woken: 1/1 Ready")
    model_metrics.set_series(WAKE_METRIC, gateway, 0)
    wait_for(lambda: md_status(custom, namespace, "chat").get("phase") == "ScaledToZero", timeout=120,
             what="idle again: ScaledToZero")


class Traffic:
    """Counters of the canary's pods advancing every second, as a server answering requests would."""

    def __init__(self, model_metrics, namespace: str, core_v1, per_second: float, errors_per_second: float):
        self.args = (model_metrics, namespace, core_v1, per_second, errors_per_second)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        model_metrics, namespace, core_v1, per_second, errors_per_second = self.args
        totals: dict[str, float] = {}
        while not self.stop.wait(1.0):
            for pod in pods(core_v1, namespace, "mlplatform.dev/track=canary"):
                totals[pod] = totals.get(pod, 0.0) + 1
                model_metrics.set(namespace, pod, "http_requests_total", totals[pod] * per_second, labels={"status": "2xx"})
                model_metrics.set(namespace, pod, "http_requests_total", totals[pod] * errors_per_second,
                                  labels={"status": "5xx"})

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


@pytest.mark.parametrize(("errors_per_second", "phase"), [(5.0, "Aborted"), (0.0, "Promoted")])
def test_a_canary_is_judged_on_its_error_rate(signals_operator, kubectl, custom, core_v1, model_metrics, namespace,
                                              wait_for, errors_per_second, phase):
    canary = {"canary": {"steps": [50], "stepSeconds": 0,
                         "analysis": {"maxErrorRate": 0.05, "intervalSeconds": 15, "failureLimit": 1}}}
    apply(kubectl, "chat", llm(replicas=2, rollout=canary), namespace)
    wait_for(lambda: condition(get_cr(custom, "ModelDeployment", namespace, "chat"), "Ready").get("status") == "True",
             timeout=90, what="stable Ready")
    with Traffic(model_metrics, namespace, core_v1, per_second=20.0, errors_per_second=errors_per_second):
        apply(kubectl, "chat", llm("hf://acme/chat-v2", replicas=2, rollout=canary), namespace)
        status = wait_for(lambda: (lambda r: r if r.get("phase") == phase else None)(
            md_status(custom, namespace, "chat").get("rollout") or {}), timeout=120, what=f"canary {phase}")
    if phase == "Aborted":
        assert status["reason"] == "AnalysisFailed"
        assert "error rate" in status["message"] and "> maxErrorRate 0.05" in status["message"]
    else:
        assert status["analysis"]["failedChecks"] == 0 and status["analysis"]["checks"] >= 1
