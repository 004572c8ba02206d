"""Multi-node ModelDeployments (nodesPerReplica > 1) on the real LeaderWorkerSet controller: groups of a
leader and workers on H100 nodes, Ready only when every group is, the HPA on the LeaderWorkerSet."""

from __future__ import annotations

from harness import condition, get_cr, resource, wait_condition

GROUP, VERSION, PLURAL = "leaderworkerset.x-k8s.io", "v1", "leaderworkersets"
MULTI = {
    "model": {"uri": "s3://models/llama-405b/", "format": "huggingface"},
    "runtime": {"preset": "vllm", "parallelism": {"tensor": 8, "pipeline": 2}},
    "nodesPerReplica": 2,
    "resources": {"cpu": "16", "memory": "64Gi", "gpu": {"count": 8, "type": "nvidia-h100-80gb"}},
    "replicas": 2,
}


def pods(core_v1, namespace: str, name: str):
    return core_v1.list_namespaced_pod(namespace, label_selector=f"app.kubernetes.io/instance={name}").items


def test_groups_of_leader_and_worker_on_h100_nodes_ready_only_when_every_group_is(
        lws_controller, operator, kubectl, custom, namespace, core_v1, wait_for):
    kubectl.apply(resource("ModelDeployment", "llm405", MULTI), namespace)
    body = wait_condition(wait_for, custom, "ModelDeployment", namespace, "llm405", "Ready", "True", timeout=120)
    assert body["status"]["replicaSummary"] == "2/2"
    lws = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "llm405")
    assert lws["status"]["readyReplicas"] == 2
    assert lws["metadata"]["ownerReferences"][0]["uid"] == body["metadata"]["uid"]
    group_pods = pods(core_v1, namespace, "llm405")
    assert len(group_pods) == 4
    roles = sorted(p.metadata.labels["leaderworkerset.sigs.k8s.io/worker-index"] for p in group_pods)
    assert roles == ["0", "0", "1", "1"]
    nodes = {p.spec.node_name for p in group_pods}
    assert len(nodes) == 4  # each pod a whole 8-GPU node
    for pod in group_pods:
        node = core_v1.read_node(pod.spec.node_name)
        assert node.metadata.labels["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3"
        assert pod.spec.containers[0].resources.limits["nvidia.com/gpu"] == "8"
        assert any(t.key == "nvidia.com/gpu" and t.operator == "Exists" for t in pod.spec.tolerations)
        env = {e.name for e in pod.spec.containers[0].env}
        assert "LWS_LEADER_ADDRESS" in env  # injected by the LWS webhook
    service = core_v1.read_namespaced_service("llm405", namespace)
    assert service.spec.selector["leaderworkerset.sigs.k8s.io/worker-index"] == "0"
    endpoints = core_v1.read_namespaced_endpoints("llm405", namespace)
    addresses = [a for s in endpoints.subsets or [] for a in s.addresses or []]
    assert {a.target_ref.name for a in addresses} == {p.metadata.name for p in group_pods
                                                    if p.metadata.labels["leaderworkerset.sigs.k8s.io/worker-index"] == "0"}

    # A third group needs two more H100 nodes; there are none: it stays unscheduled and Ready says so.
    kubectl.apply(resource("ModelDeployment", "llm405", {**MULTI, "replicas": 3}), namespace)
    body = wait_condition(wait_for, custom, "ModelDeployment", namespace, "llm405", "Ready", "False", timeout=60)

    def three_desired():
        b = get_cr(custom, "ModelDeployment", namespace, "llm405")
        return b if b["status"].get("replicaSummary") == "2/3" else None
    body = wait_for(three_desired, timeout=60, what="replicaSummary 2/3")
    assert body["status"]["phase"] in ("Progressing", "Degraded")
    assert condition(body, "Ready")["reason"] in ("Unschedulable", "RollingOut")
    kubectl.run("delete", "modeldeployment", "llm405", "-n", namespace, "--wait=true", "--timeout=60s")


def test_hpa_targets_the_leader_worker_set(lws_controller, operator, kubectl, custom, namespace, wait_for):
    spec = {**MULTI, "autoscaling": {"minReplicas": 1, "maxReplicas": 2, "targets": {"requestsPerSecond": 5}}}
    del spec["replicas"]
    kubectl.apply(resource("ModelDeployment", "llm-hpa", spec), namespace)
    wait_condition(wait_for, custom, "ModelDeployment", namespace, "llm-hpa", "Ready", "True", timeout=120)
    from kubernetes import client
    hpa = client.AutoscalingV2Api(custom.api_client).read_namespaced_horizontal_pod_autoscaler("llm-hpa", namespace)
    assert (hpa.spec.scale_target_ref.api_version, hpa.spec.scale_target_ref.kind) == (f"{GROUP}/{VERSION}",
                                                                                        "LeaderWorkerSet")
    lws = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "llm-hpa")
    assert lws["spec"]["replicas"] == 1  # minReplicas handed over; the HPA owns it from here

    def able_to_scale():
        h = client.AutoscalingV2Api(custom.api_client).read_namespaced_horizontal_pod_autoscaler("llm-hpa", namespace)
        conds = {c.type: c for c in (h.status.conditions or [])}
        return conds.get("AbleToScale")
    cond = wait_for(able_to_scale, timeout=60, what="HPA AbleToScale")
    assert cond.status == "True", cond.message  # the HPA reads the LeaderWorkerSet's scale subresource
    kubectl.run("delete", "modeldeployment", "llm-hpa", "-n", namespace, "--wait=true", "--timeout=60s")


def test_a_group_whose_worker_is_pending_is_not_ready_and_is_named(
        lws_controller, operator, kubectl, custom, namespace, core_v1, wait_for):
    """One H100 node cordoned: 3 nodes for 2 groups of 2 pods, one pod stays Pending. Whatever the LWS
    controller counts, the ModelDeployment is not Ready (counted from the pods: every pod of a group Ready) in
    any state the API server holds, and its Ready message names the group that is missing."""
    from recorder import Recorder

    cordoned = "kwok-h100-3"
    kubectl.run("cordon", cordoned)
    try:
        bodies = Recorder(custom.list_namespaced_custom_object, "mlplatform.dev", "v1alpha1", namespace,
                          "modeldeployments", name="llm-short")
        kubectl.apply(resource("ModelDeployment", "llm-short", MULTI), namespace)

        def pending_pod():
            items = [p for p in pods(core_v1, namespace, "llm-short") if p.status.phase == "Pending"]
            running = [p for p in pods(core_v1, namespace, "llm-short") if p.status.phase == "Running"]
            return items[0] if items and len(running) == 3 else None
        pending = wait_for(pending_pod, timeout=90, what="3 pods Running, 1 Pending")
        group = pending.metadata.labels["leaderworkerset.sigs.k8s.io/group-index"]

        def names_the_group():
            body = get_cr(custom, "ModelDeployment", namespace, "llm-short")
            ready = condition(body, "Ready")
            return body if ready.get("status") == "False" and f"group {group} not Ready" in ready.get("message", "") \
                else None
        body = wait_for(names_the_group, timeout=60, what=f"Ready False naming group {group}")
        assert body["status"]["replicaSummary"] == "1/2"
        import time
        time.sleep(10)  # the LWS controller and the operator have long seen the 3 Ready pods
        states = bodies.stop()
        assert states and all(condition(b, "Ready").get("status") != "True" for b in states), \
            [condition(b, "Ready") for b in states]
    finally:
        kubectl.run("uncordon", cordoned, check=False)
        kubectl.run("delete", "modeldeployment", "llm-short", "-n", namespace, "--wait=true", "--timeout=60s",
                    check=False)
