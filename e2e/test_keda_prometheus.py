"""The autoscaling pipeline itself, before any ModelDeployment uses it (issue 19): the simulated model-metrics
exporter -> the real Prometheus -> a hand-written KEDA ScaledObject (prometheus triggers) -> the KEDA operator
-> the HPA it creates -> the real HPA controller in kube-controller-manager, reading KEDA's external metrics
through the aggregation layer (e2e/controlplane/keda.py) -> the Deployment's replicas.

Timing (printed, not asserted): from the moment a test changes a metric to the Deployment's new
spec.replicas. Settings that make it seconds: Prometheus scrapes every 1 s; KEDA pollingInterval 1 s,
cooldownPeriod 5 s; the HPA controller syncs every 2 s and stabilizes scale-down over 10 s (cluster.HPA_FLAGS).
"""

from __future__ import annotations

import time

SERVER = "server"
LABELS = {"app": SERVER, "app.kubernetes.io/name": "model-server"}


def deployment(replicas: int) -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": SERVER, "labels": LABELS},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": SERVER}},
                     "template": {"metadata": {"labels": LABELS, "annotations": {"prometheus.io/scrape": "true",
                                                                                 "prometheus.io/port": "8000"}},
                                  "spec": {"terminationGracePeriodSeconds": 0, "containers": [{
                                      "name": "server", "image": "vllm/vllm-openai:v0.11.0",
                                      "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]}}}}


def prometheus_trigger(url: str, query: str, threshold: float, name: str) -> dict:
    return {"type": "prometheus", "name": name,
            "metadata": {"serverAddress": url, "query": query, "threshold": str(threshold)}}


def scaled_object(min_replicas: int, max_replicas: int, triggers: list[dict]) -> dict:
    return {"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "metadata": {"name": SERVER},
            "spec": {"scaleTargetRef": {"name": SERVER}, "pollingInterval": 1, "cooldownPeriod": 5,
                     "minReplicaCount": min_replicas, "maxReplicaCount": max_replicas, "triggers": triggers}}


def replicas(apps_v1, namespace: str) -> int:
    return apps_v1.read_namespaced_deployment(SERVER, namespace).spec.replicas


def wait_replicas(wait_for, apps_v1, namespace: str, wanted: int, since: float, what: str, timeout: float = 90) -> float:
    """Until the Deployment's spec.replicas is `wanted`; prints and returns the seconds since `since`."""
    wait_for(lambda: replicas(apps_v1, namespace) == wanted, timeout=timeout, interval=0.2,
             what=f"{what}: Deployment {SERVER} at {wanted} replicas (now {replicas(apps_v1, namespace)})")
    seconds = time.monotonic() - since
    print(f"\n[timing] {what}: {seconds:.1f}s from the metric change to spec.replicas={wanted}")
    return seconds


def pods_ready(core_v1, namespace: str) -> int:
    pods = core_v1.list_namespaced_pod(namespace, label_selector=f"app={SERVER}").items
    return sum(1 for p in pods if p.status.phase == "Running" and p.metadata.deletion_timestamp is None)


def scaled_object_condition(kubectl, namespace: str, type_: str) -> str:
    return kubectl.run("get", "scaledobject", SERVER, "-n", namespace, "-o",
                       f"jsonpath={{.status.conditions[?(@.type=='{type_}')].status}}").stdout


def external_metric(kubectl, namespace: str, metric: str) -> list[dict]:
    """What the HPA controller reads: KEDA's external metrics API, through the kube-apiserver."""
    import json

    raw = kubectl.run("get", "--raw", f"/apis/external.metrics.k8s.io/v1beta1/namespaces/{namespace}/{metric}"
                      f"?labelSelector=scaledobject.keda.sh%2Fname%3D{SERVER}").stdout
    return json.loads(raw)["items"]


def test_simulated_nodes_are_spread_over_zones(core_v1):
    zones = {n.metadata.labels.get("topology.kubernetes.io/zone") for n in core_v1.list_node().items}
    assert len(zones - {None}) >= 2 and None not in zones


def test_prometheus_scrapes_the_pods_series_with_their_kubernetes_labels(prometheus, model_metrics, kubectl, namespace,
                                                                          apps_v1, core_v1, wait_for):
    kubectl.apply(deployment(2), namespace)
    wait_for(lambda: pods_ready(core_v1, namespace) == 2, timeout=60, what="2 server pods Running")
    unscraped = {**deployment(1), "metadata": {"name": "sidecar-free"}}
    unscraped["spec"]["template"]["metadata"]["annotations"] = {}
    unscraped["spec"]["selector"]["matchLabels"] = unscraped["spec"]["template"]["metadata"]["labels"] = {"app": "quiet"}
    kubectl.apply(unscraped, namespace)
    model_metrics.set(namespace, "app=server", "vllm:num_requests_waiting", 3)
    model_metrics.set(namespace, "app=quiet", "vllm:num_requests_waiting", 100)  # no prometheus.io/scrape: no series
    model_metrics.observe(namespace, {"app": SERVER}, "vllm:e2e_request_latency_seconds", 0.4, count=10)
    model_metrics.set_series("gateway_pending_requests", {"namespace": namespace, "route": SERVER}, 2)
    prometheus.wait_value(f'sum(vllm:num_requests_waiting{{namespace="{namespace}"}})', lambda v: v == 6,
                          what="both pods' queue series in Prometheus")
    series = prometheus.query(f'vllm:num_requests_waiting{{namespace="{namespace}"}}')
    pods = {p.metadata.name for p in core_v1.list_namespaced_pod(namespace, label_selector="app=server").items}
    assert {s["metric"]["pod"] for s in series} == pods
    for s in series:
        assert s["metric"]["app"] == SERVER and s["metric"]["app_kubernetes_io_name"] == "model-server"
        assert s["metric"]["job"] == "model-metrics"
    p99 = prometheus.value(f'histogram_quantile(0.99, sum by (le) (rate(vllm:e2e_request_latency_seconds_bucket'
                           f'{{namespace="{namespace}"}}[1m])))')
    assert p99 is None or 0.25 < p99 <= 0.5  # no rate before a second sample; then within the 0.25-0.5 bucket
    assert prometheus.value(f'gateway_pending_requests{{namespace="{namespace}",route="{SERVER}"}}') == 2


def test_queue_depth_scales_one_to_n_through_the_keda_hpa_and_back(keda, prometheus, model_metrics, kubectl,
                                                                    namespace, apps_v1, core_v1, wait_for):
    kubectl.apply(deployment(1), namespace)
    wait_for(lambda: pods_ready(core_v1, namespace) == 1, timeout=60, what="the server pod Running")
    query = f'sum(vllm:num_requests_waiting{{namespace="{namespace}"}}) or vector(0)'
    kubectl.apply(scaled_object(1, 4, [prometheus_trigger(prometheus.url, query, 5, "queue")]), namespace)
    hpa = wait_for(lambda: kubectl.run("get", "hpa", f"keda-hpa-{SERVER}", "-n", namespace, "-o", "name",
                                       check=False).stdout.strip(), timeout=60, what="the HPA KEDA creates")
    assert hpa == f"horizontalpodautoscaler.autoscaling/keda-hpa-{SERVER}"
    wait_for(lambda: scaled_object_condition(kubectl, namespace, "Ready") == "True", timeout=60,
             what="ScaledObject Ready")

    first = core_v1.list_namespaced_pod(namespace, label_selector=f"app={SERVER}").items[0].metadata.name
    model_metrics.set(namespace, first, "vllm:num_requests_waiting", 18)  # the queue sits on the pod there is
    since = time.monotonic()
    prometheus.wait_value(query, lambda v: v == 18, what="the queue in Prometheus")
    print(f"\n[timing] metric change -> in Prometheus: {time.monotonic() - since:.1f}s")
    up = wait_replicas(wait_for, apps_v1, namespace, 4, since, "1 -> N (queue 18, 5 per replica)")
    metric = kubectl.run("get", "hpa", f"keda-hpa-{SERVER}", "-n", namespace, "-o",
                         "jsonpath={.spec.metrics[0].external.metric.name}").stdout
    [item] = external_metric(kubectl, namespace, metric)  # what the HPA controller read
    value = item["value"]  # a Quantity: "18" or "18000m"
    assert (float(value[:-1]) / 1000 if value.endswith("m") else float(value)) == 18
    wait_for(lambda: pods_ready(core_v1, namespace) == 4, timeout=60, what="4 server pods Running")
    print(f"[timing] 1 -> N: {time.monotonic() - since:.1f}s to 4 pods Running (scale-up at {up:.1f}s)")

    model_metrics.set(namespace, first, "vllm:num_requests_waiting", 0)
    since = time.monotonic()
    wait_replicas(wait_for, apps_v1, namespace, 1, since, "N -> 1 (queue drained; 10 s downscale stabilization)")


def test_idle_scales_to_zero_and_gateway_demand_wakes_it(keda, prometheus, model_metrics, kubectl, namespace,
                                                         apps_v1, core_v1, wait_for):
    kubectl.apply(deployment(1), namespace)
    wait_for(lambda: pods_ready(core_v1, namespace) == 1, timeout=60, what="the server pod Running")
    queue = f'sum(vllm:num_requests_waiting{{namespace="{namespace}"}}) or vector(0)'
    # The demand series exists while no replica runs: the gateway's pending requests for the route.
    pending = f'sum(gateway_pending_requests{{namespace="{namespace}",route="{SERVER}"}}) or vector(0)'
    since = time.monotonic()
    kubectl.apply(scaled_object(0, 3, [prometheus_trigger(prometheus.url, queue, 5, "queue"),
                                       prometheus_trigger(prometheus.url, pending, 5, "pending")]), namespace)
    # Never active yet: KEDA scales to zero at once (initialCooldownPeriod 0); cooldownPeriod counts from the
    # last activity (the last step below).
    wait_replicas(wait_for, apps_v1, namespace, 0, since, "idle -> 0 (ScaledObject applied, never active)")
    wait_for(lambda: pods_ready(core_v1, namespace) == 0, timeout=60, what="no server pod left")
    assert scaled_object_condition(kubectl, namespace, "Active") != "True"  # Unknown until it was once active

    model_metrics.set_series("gateway_pending_requests", {"namespace": namespace, "route": SERVER}, 3)
    since = time.monotonic()
    wait_replicas(wait_for, apps_v1, namespace, 1, since, "0 -> 1 (3 requests pending at the gateway)")
    wait_for(lambda: scaled_object_condition(kubectl, namespace, "Active") == "True", timeout=30,
             what="ScaledObject Active")
    wait_for(lambda: pods_ready(core_v1, namespace) == 1, timeout=60, what="the woken server pod Running")

    model_metrics.remove_series("gateway_pending_requests", {"namespace": namespace, "route": SERVER})
    since = time.monotonic()
    wait_replicas(wait_for, apps_v1, namespace, 0, since, "1 -> 0 (demand gone; cooldownPeriod 5 s)")

