"""The pure parts of the model-signals harness (e2e/model_metrics.py, e2e/controlplane/netns.py): what the
simulated exporter exposes for which pods, and how a cluster's network namespace is named and addressed.
The real pipeline (Prometheus scraping it, KEDA, the HPA controller) is tested in e2e/test_keda_prometheus.py."""

from __future__ import annotations

import ipaddress
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

E2E = Path(__file__).resolve().parents[1] / "e2e"
sys.path.insert(0, str(E2E))
sys.path.insert(0, str(E2E / "controlplane"))

import model_metrics  # noqa: E402 - e2e/model_metrics.py, importable once the lines above ran
import netns  # noqa: E402 - e2e/controlplane/netns.py, same


def pod(name: str, labels: dict, namespace: str = "ns", scrape: str | None = "true", phase: str = "Running") -> dict:
    annotations = {"prometheus.io/scrape": scrape} if scrape is not None else {}
    return {"metadata": {"name": name, "namespace": namespace, "labels": labels, "annotations": annotations},
            "status": {"phase": phase}}


PODS = [pod("chat-a", {"app": "chat", "app.kubernetes.io/version": "v2"}),
        pod("chat-b", {"app": "chat"}),
        pod("chat-pending", {"app": "chat"}, phase="Pending"),
        pod("chat-unscraped", {"app": "chat"}, scrape=None),
        pod("other", {"app": "chat"}, namespace="elsewhere")]


def samples(text: str) -> dict[tuple, float]:
    """{(sample name, sorted labels): value}, parsed by the official client's parser."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def exporter() -> model_metrics.ModelMetrics:
    return model_metrics.ModelMetrics(lambda: PODS)


def test_a_gauge_by_selector_is_on_every_scraped_matching_pod_with_kubernetes_sd_labels():
    m = exporter()
    m.set("ns", "app=chat", "vllm:num_requests_waiting", 7)
    got = samples(m.render(PODS))
    assert got == {
        ("vllm:num_requests_waiting", (("app", "chat"), ("app_kubernetes_io_version", "v2"), ("namespace", "ns"),
                                       ("pod", "chat-a"))): 7.0,
        ("vllm:num_requests_waiting", (("app", "chat"), ("namespace", "ns"), ("pod", "chat-b"))): 7.0,
    }


def test_a_pod_name_selects_one_pod_and_the_later_setting_wins():
    m = exporter()
    m.set("ns", {"app": "chat"}, "vllm:kv_cache_usage_perc", 0.2)
    m.set("ns", "chat-b", "vllm:kv_cache_usage_perc", 0.9)
    by_pod = {dict(k[1])["pod"]: v for k, v in samples(m.render(PODS)).items()}
    assert by_pod == {"chat-a": 0.2, "chat-b": 0.9}
    m.set("ns", {"app": "chat"}, "vllm:kv_cache_usage_perc", 0.5)  # updated last: wins on chat-b too
    assert {dict(k[1])["pod"]: v for k, v in samples(m.render(PODS)).items()} == {"chat-a": 0.5, "chat-b": 0.5}


def test_counters_add_up_and_histograms_are_cumulative():
    m = exporter()
    m.inc("ns", "chat-a", "vllm:request_success_total", 3, labels={"finished_reason": "stop"})
    m.inc("ns", "chat-a", "vllm:request_success_total", 2, labels={"finished_reason": "stop"})
    m.observe("ns", "chat-a", "vllm:e2e_request_latency_seconds", 0.3, buckets=(0.1, 0.5, 1.0), count=2)
    m.observe("ns", "chat-a", "vllm:e2e_request_latency_seconds", 2.0, buckets=(0.1, 0.5, 1.0))
    got = {(name, dict(labels).get("le")): v for (name, labels), v in samples(m.render(PODS)).items()}
    assert got[("vllm:request_success_total", None)] == 5
    assert [got[("vllm:e2e_request_latency_seconds_bucket", le)] for le in ("0.1", "0.5", "1.0", "+Inf")] == [0, 2, 2, 3]
    assert got[("vllm:e2e_request_latency_seconds_count", None)] == 3
    assert got[("vllm:e2e_request_latency_seconds_sum", None)] == pytest.approx(2.6)
    with pytest.raises(ValueError, match="only goes up"):
        m.inc("ns", "chat-a", "vllm:request_success_total", -1)
    with pytest.raises(ValueError, match="is a counter, not a gauge"):
        m.set("ns", "chat-a", "vllm:request_success_total", 0, labels={"finished_reason": "stop"})


def test_a_series_of_no_pod_is_exposed_as_given_and_clear_forgets_a_namespace():
    m = exporter()
    m.set_series("gateway_pending_requests", {"namespace": "ns", "route": "chat"}, 3)
    m.set("ns", "chat-a", "vllm:num_requests_running", 1)
    m.set("elsewhere", "other", "vllm:num_requests_running", 4)
    assert samples(m.render([]))[("gateway_pending_requests", (("namespace", "ns"), ("route", "chat")))] == 3
    m.clear("ns")
    assert samples(m.render(PODS)) == {
        ("vllm:num_requests_running", (("app", "chat"), ("namespace", "elsewhere"), ("pod", "other"))): 4.0}


def test_bad_names_and_selectors_are_refused():
    m = exporter()
    with pytest.raises(ValueError, match="not a Prometheus metric name"):
        m.set("ns", "chat-a", "vllm-num-requests", 1)
    with pytest.raises(ValueError, match="k=v"):
        m.set("ns", "app=chat,=x", "up", 1)


def test_the_namespace_of_a_run_dir_is_stable_distinct_and_avoids_taken_addresses():
    a, b = netns.plan(Path("/tmp/run-a")), netns.plan(Path("/tmp/run-b"))
    assert netns.plan(Path("/tmp/run-a")) == a and a.name != b.name and a.host_ip != b.host_ip
    for ns in (a, b):
        net = ipaddress.ip_network(f"{ns.host_ip}/30", strict=False)
        assert net.subnet_of(netns.SUPERNET) and ipaddress.ip_address(ns.inside_ip) in net
        assert net.network_address != ipaddress.ip_address(ns.host_ip)  # .1 and .2 of the /30, not its network
        assert max(len(ns.host_if), len(ns.inside_if)) <= 15  # Linux interface names
    moved = netns.plan(Path("/tmp/run-a"), taken={a.host_ip})
    assert moved.name == a.name and moved.host_ip != a.host_ip


def test_keda_registration_is_valid_kubernetes_and_points_inside_the_namespace():
    import kubernetes_validate

    import keda  # e2e/controlplane/keda.py

    ns = netns.plan(Path("/tmp/run-a"))
    objects = keda.registration(ns.inside_ip, "Q0E=")
    for obj in objects:
        kubernetes_validate.validate(obj, kubernetes_validate.latest_version(), strict=True)
    by_kind = {o["kind"]: o for o in objects}
    [endpoint] = by_kind["EndpointSlice"]["endpoints"]
    assert endpoint["addresses"] == [ns.inside_ip] and not ipaddress.ip_address(ns.inside_ip).is_loopback
    assert by_kind["EndpointSlice"]["metadata"]["labels"]["kubernetes.io/service-name"] == keda.SERVICE
    assert "selector" not in by_kind["Service"]["spec"]  # endpoints are ours, not a controller's
    api = by_kind["APIService"]
    assert api["metadata"]["name"] == "v1beta1.external.metrics.k8s.io" and api["spec"]["caBundle"] == "Q0E="
    assert api["spec"]["service"] == {"name": keda.SERVICE, "namespace": keda.NAMESPACE, "port": 443}
    assert by_kind["ClusterRoleBinding"]["subjects"] == [
        {"kind": "ServiceAccount", "name": "horizontal-pod-autoscaler", "namespace": "kube-system"}]
