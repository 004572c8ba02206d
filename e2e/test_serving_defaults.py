"""Serving defaults and refusals on the real control plane, without Prometheus or KEDA: the API server refuses
minReplicas 0 without engine keda (CEL), model pods as stored carry the spread, liveness, drain, scrape and
version metadata, a canary's mirror filter is on the stored HTTPRoute for mirrorSeconds and then gone, and a
cluster without KEDA's CRD gets a Stalled reason that says so."""
from __future__ import annotations

import yaml

from harness import condition, get_cr, resource, wait_condition

FIELD_MANAGER = "argocd-controller"


def apply(kubectl, manifest: dict, namespace: str, check: bool = True):
    return kubectl.run("apply", "--server-side", f"--field-manager={FIELD_MANAGER}", "--force-conflicts",
                       "-n", namespace, "-f", "-", stdin=yaml.safe_dump(manifest), check=check)


def model(uri: str = "s3://models/churn/v1/", **extra) -> dict:
    spec = {"model": {"uri": uri, "format": "sklearn"}, "runtime": {"preset": "mlserver"},
            "resources": {"cpu": "100m", "memory": "128Mi"}, "replicas": 2}
    spec.update(extra)
    return spec


def wait_ready(wait_for, custom, namespace: str, name: str, timeout: float = 90) -> dict:
    def check():
        body = get_cr(custom, "ModelDeployment", namespace, name)
        current = (body.get("status") or {}).get("observedGeneration") == body["metadata"]["generation"]
        return body if current and condition(body, "Ready").get("status") == "True" else None
    return wait_for(check, timeout=timeout, interval=0.3, what=f"ModelDeployment {name} Ready")


def test_the_api_server_refuses_min_replicas_zero_without_keda(operator, kubectl, namespace):
    spec = model(autoscaling={"minReplicas": 0, "maxReplicas": 2, "targets": {"cpuUtilization": 50}})
    del spec["replicas"]
    result = apply(kubectl, resource("ModelDeployment", "bad", spec), namespace, check=False)
    assert result.returncode != 0
    assert "autoscaling.minReplicas 0 (scale to zero) needs autoscaling.engine: keda" in result.stderr, result.stderr


def test_model_pods_are_spread_probed_drained_and_scraped(operator, kubectl, custom, core_v1, namespace, wait_for):
    apply(kubectl, resource("ModelDeployment", "scorer", model()), namespace)
    wait_ready(wait_for, custom, namespace, "scorer")
    pods = core_v1.list_namespaced_pod(namespace, label_selector="app.kubernetes.io/instance=scorer").items
    assert len(pods) == 2
    for pod in pods:
        spread = {(c.topology_key, c.when_unsatisfiable) for c in pod.spec.topology_spread_constraints}
        assert spread == {("topology.kubernetes.io/zone", "ScheduleAnyway"), ("kubernetes.io/hostname", "ScheduleAnyway")}
        server = pod.spec.containers[0]
        assert server.liveness_probe.http_get.path == "/v2/health/live"
        assert server.lifecycle.pre_stop.sleep.seconds == 10
        assert pod.spec.termination_grace_period_seconds == 60
        assert pod.metadata.labels["mlplatform.dev/version"] == "stable"
        assert pod.metadata.annotations["prometheus.io/scrape"] == "true"
        assert pod.metadata.annotations["prometheus.io/port"] == "8082"


def test_requests_are_mirrored_to_the_canary_for_mirror_seconds_then_not(operator, kubectl, custom, namespace,
                                                                          wait_for):
    gateway = {"parentRefs": [{"name": "inference", "namespace": "gateway-system"}]}
    canary = {"canary": {"steps": [10, 50], "stepSeconds": 30, "mirrorPercent": 100, "mirrorSeconds": 5}}
    apply(kubectl, resource("ModelDeployment", "scorer", model(gateway=gateway, rollout=canary)), namespace)
    wait_ready(wait_for, custom, namespace, "scorer")
    apply(kubectl, resource("ModelDeployment", "scorer", model("s3://models/churn/v2/", gateway=gateway,
                                                               rollout=canary)), namespace)

    def rule():
        route = custom.get_namespaced_custom_object("gateway.networking.k8s.io", "v1", namespace, "httproutes", "scorer")
        return route["spec"]["rules"][0]

    mirrored = wait_for(lambda: (lambda r: r if r.get("filters") else None)(rule()), timeout=60, interval=0.3,
                        what="RequestMirror filter on the route")
    assert mirrored["filters"] == [{"type": "RequestMirror", "requestMirror": {
        "backendRef": {"group": "", "kind": "Service", "name": "scorer-canary", "port": 80}, "percent": 100}}]
    assert [(b["name"], b["weight"]) for b in mirrored["backendRefs"]] == [("scorer", 100), ("scorer-canary", 0)]
    step1 = wait_for(lambda: (lambda r: r if not r.get("filters") else None)(rule()), timeout=60, interval=0.3,
                     what="mirror filter gone after mirrorSeconds")
    assert [(b["name"], b["weight"]) for b in step1["backendRefs"]] == [("scorer", 90), ("scorer-canary", 10)]
    # The route is applied before the status is written (apply, then report): the status may follow a moment later.
    status = wait_for(lambda: (lambda r: r if r.get("mirrorEndTime") else None)(
        get_cr(custom, "ModelDeployment", namespace, "scorer")["status"].get("rollout") or {}), timeout=30,
        what="status.rollout.mirrorEndTime")
    assert status["mirrorStartTime"] and status["step"] == 1


def test_keda_engine_without_keda_is_stalled_saying_so(operator, kubectl, custom, namespace, wait_for):
    crds = kubectl.run("get", "crd", "-o", "name").stdout
    assert "scaledobjects.keda.sh" not in crds  # this test is about a cluster without KEDA
    spec = model(autoscaling={"engine": "keda", "minReplicas": 1, "maxReplicas": 2,
                              "targets": {"cpuUtilization": 50}})
    del spec["replicas"]
    apply(kubectl, resource("ModelDeployment", "scorer", spec), namespace)
    body = wait_condition(wait_for, custom, "ModelDeployment", namespace, "scorer", "Stalled", "True",
                          "KEDANotInstalled")
    assert "KEDA (keda.sh/v1alpha1 ScaledObject) is not installed" in condition(body, "Stalled")["message"]
    assert condition(body, "Ready")["status"] == "False"
