"""End-to-end checks of the local control plane (or of E2E_KUBECONFIG's cluster).

They use the official Python client through the kubeconfig fixture only, so
they also run against a kind cluster with the same simulated GPU nodes.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from kubernetes import client

GPU = "nvidia.com/gpu"
H100 = "NVIDIA-H100-80GB-HBM3"
GPU_TOLERATION = client.V1Toleration(key=GPU, operator="Exists", effect="NoSchedule")
IMAGE = "registry.k8s.io/pause:3.10"


# --------------------------------------------------------------------------- helpers

def container(name="main", gpus=0, cpu="100m", memory="64Mi", probe=False):
    limits = {GPU: str(gpus)} if gpus else None
    c = client.V1Container(
        name=name, image=IMAGE,
        resources=client.V1ResourceRequirements(requests={"cpu": cpu, "memory": memory},
                                                limits=limits))
    if probe:
        c.readiness_probe = client.V1Probe(http_get=client.V1HTTPGetAction(path="/healthz",
                                                                          port=8080),
                                           period_seconds=5)
    return c


def deployment(name, replicas, pod_spec, annotations=None):
    labels = {"app": name}
    return client.V1Deployment(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1DeploymentSpec(
            replicas=replicas,
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels, annotations=annotations),
                spec=pod_spec)))


def job(name, annotations=None, backoff_limit=0, completions=1, parallelism=1):
    return client.V1Job(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1JobSpec(
            backoff_limit=backoff_limit, completions=completions, parallelism=parallelism,
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(annotations=annotations),
                spec=client.V1PodSpec(restart_policy="Never", containers=[container()]))))


def pods(core_v1, ns, selector=None):
    return core_v1.list_namespaced_pod(ns, label_selector=selector).items


def node_map(core_v1):
    return {n.metadata.name: n for n in core_v1.list_node().items}


def job_condition(batch_v1, ns, name):
    j = batch_v1.read_namespaced_job_status(name, ns)
    for c in j.status.conditions or []:
        if c.type in ("Complete", "Failed") and c.status == "True":
            return c.type
    return None


def events_for(core_v1, ns, pod_name):
    return [e for e in core_v1.list_namespaced_event(ns).items
            if e.involved_object.name == pod_name]


# --------------------------------------------------------------------------- basics

def test_version_and_nodes(api_client, core_v1):
    info = client.VersionApi(api_client).get_code()
    if not os.environ.get("E2E_KUBECONFIG"):
        assert info.git_version == "v1.36.3", info
        assert (info.major, info.minor) == ("1", "36")
    nodes = node_map(core_v1)
    h100 = [n for n in nodes.values()
            if (n.metadata.labels or {}).get("nvidia.com/gpu.product") == H100]
    l4 = [n for n in nodes.values()
          if (n.metadata.labels or {}).get("nvidia.com/gpu.product") == "NVIDIA-L4"]
    cpu = [n for n in nodes.values() if GPU not in (n.status.allocatable or {})]
    assert len(h100) >= 4 and len(l4) >= 1 and len(cpu) >= 3, sorted(nodes)
    for n in h100:
        assert n.status.allocatable[GPU] == "8"
        assert n.status.capacity["cpu"] == "96"
        assert n.metadata.labels["nvidia.com/gpu.present"] == "true"
        assert n.metadata.labels["nvidia.com/gpu.count"] == "8"
        assert any(t.key == GPU and t.effect == "NoSchedule" for t in n.spec.taints or [])
    assert l4[0].status.allocatable[GPU] == "4"
    for n in nodes.values():
        ready = {c.type: c.status for c in n.status.conditions}.get("Ready")
        assert ready == "True", n.metadata.name
        assert n.metadata.labels["kubernetes.io/os"] == "linux"
        assert n.metadata.labels["kubernetes.io/hostname"] == n.metadata.name


# --------------------------------------------------------------------------- GPUs

def test_gpu_deployment_runs_on_gpu_nodes(namespace, core_v1, apps_v1, wait_for):
    spec = client.V1PodSpec(containers=[container(gpus=2)], tolerations=[GPU_TOLERATION])
    apps_v1.create_namespaced_deployment(namespace, deployment("trainer", 3, spec))

    def running():
        ps = pods(core_v1, namespace, "app=trainer")
        return ps if len(ps) == 3 and all(p.status.phase == "Running" for p in ps) else None
    ps = wait_for(running, timeout=60, what="3 GPU pods Running")
    nodes = node_map(core_v1)
    for p in ps:
        node = nodes[p.spec.node_name]
        assert int(node.status.allocatable.get(GPU, "0")) >= 2, p.spec.node_name
        assert node.metadata.labels.get("nvidia.com/gpu.present") == "true"
        assert p.status.pod_ip, "kwok assigns a pod IP"
        assert all(cs.ready for cs in p.status.container_statuses)
    wait_for(lambda: (apps_v1.read_namespaced_deployment_status("trainer", namespace)
                      .status.ready_replicas == 3),
             timeout=30, what="deployment ready_replicas == 3")


def gpus_in_use(core_v1, node_name):
    used = 0
    for p in core_v1.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={node_name}").items:
        if p.status.phase in ("Succeeded", "Failed"):
            continue
        for c in p.spec.containers:
            used += int(((c.resources and c.resources.limits) or {}).get(GPU, 0))
    return used


def test_gpus_are_not_oversubscribed(namespace, core_v1, apps_v1, wait_for):
    """The single L4 node has 4 GPUs: 2-GPU pods fill it, one more stays Pending."""
    free = 4 - gpus_in_use(core_v1, "kwok-l4-0")  # others may share the cluster
    fit = free // 2
    spec = client.V1PodSpec(containers=[container(gpus=2)], tolerations=[GPU_TOLERATION],
                            node_selector={"nvidia.com/gpu.product": "NVIDIA-L4"})
    apps_v1.create_namespaced_deployment(namespace, deployment("l4", fit + 1, spec))

    def settled():
        ps = pods(core_v1, namespace, "app=l4")
        phases = sorted(p.status.phase for p in ps)
        return ps if phases == ["Pending"] + ["Running"] * fit else None
    ps = wait_for(settled, timeout=60, what=f"{fit} Running + 1 Pending on the L4 node")
    assert all(p.spec.node_name == "kwok-l4-0" for p in ps if p.status.phase == "Running")
    pending = [p for p in ps if p.status.phase == "Pending"][0]
    assert pending.spec.node_name is None
    wait_for(lambda: any("Insufficient nvidia.com/gpu" in (e.message or "")
                         for e in events_for(core_v1, namespace, pending.metadata.name)),
             timeout=30, what="FailedScheduling event for insufficient GPUs")
    # Still pending a few seconds later: nothing frees a GPU.
    time.sleep(3)
    assert core_v1.read_namespaced_pod(pending.metadata.name, namespace).status.phase == "Pending"


def test_pod_needing_more_gpus_than_any_node_stays_pending(namespace, core_v1, wait_for):
    pod = client.V1Pod(metadata=client.V1ObjectMeta(name="nine-gpus"),
                       spec=client.V1PodSpec(containers=[container(gpus=9)],
                                             tolerations=[GPU_TOLERATION]))
    core_v1.create_namespaced_pod(namespace, pod)
    wait_for(lambda: any("Insufficient nvidia.com/gpu" in (e.message or "")
                         for e in events_for(core_v1, namespace, "nine-gpus")),
             timeout=30, what="FailedScheduling event for insufficient GPUs")
    p = core_v1.read_namespaced_pod("nine-gpus", namespace)
    assert p.status.phase == "Pending" and not p.spec.node_name


def test_gpu_pod_without_toleration_stays_pending(namespace, core_v1, wait_for):
    pod = client.V1Pod(metadata=client.V1ObjectMeta(name="no-toleration"),
                       spec=client.V1PodSpec(containers=[container(gpus=1)]))
    core_v1.create_namespaced_pod(namespace, pod)
    wait_for(lambda: any("untolerated taint" in (e.message or "") and GPU in (e.message or "")
                         for e in events_for(core_v1, namespace, "no-toleration")),
             timeout=30, what="FailedScheduling event naming the nvidia.com/gpu taint")
    p = core_v1.read_namespaced_pod("no-toleration", namespace)
    assert p.status.phase == "Pending" and not p.spec.node_name


def test_pod_selecting_h100_lands_on_h100(namespace, core_v1, wait_for):
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name="wants-h100"),
        spec=client.V1PodSpec(containers=[container(gpus=1)], tolerations=[GPU_TOLERATION],
                              node_selector={"nvidia.com/gpu.product": H100}))
    core_v1.create_namespaced_pod(namespace, pod)
    p = wait_for(lambda: (lambda p: p if p.status.phase == "Running" else None)(
        core_v1.read_namespaced_pod("wants-h100", namespace)), timeout=60, what="H100 pod Running")
    node = core_v1.read_node(p.spec.node_name)
    assert node.metadata.labels["nvidia.com/gpu.product"] == H100


def test_cpu_pods_avoid_gpu_nodes(namespace, core_v1, apps_v1, wait_for):
    spec = client.V1PodSpec(containers=[container(probe=True)])
    apps_v1.create_namespaced_deployment(namespace, deployment("web", 4, spec))

    def ready():
        ps = pods(core_v1, namespace, "app=web")
        ok = len(ps) == 4 and all(
            p.status.phase == "Running"
            and {c.type: c.status for c in p.status.conditions or []}.get("Ready") == "True"
            for p in ps)
        return ps if ok else None
    ps = wait_for(ready, timeout=60, what="4 web pods Running and Ready (probe not run)")
    nodes = node_map(core_v1)
    for p in ps:
        assert GPU not in (nodes[p.spec.node_name].status.allocatable or {})
    # Deployment pods keep running: they do not complete like Job pods.
    time.sleep(5)
    assert all(p.status.phase == "Running" for p in pods(core_v1, namespace, "app=web"))


# --------------------------------------------------------------------------- Jobs

def test_job_completes(namespace, core_v1, batch_v1, wait_for):
    batch_v1.create_namespaced_job(
        namespace, job("train", annotations={"mlplatform.dev/kwok-complete-after": "6s"}))
    # Runs first (the annotation keeps it running ~6s) ...
    wait_for(lambda: [p for p in pods(core_v1, namespace, "job-name=train")
                      if p.status.phase == "Running"], timeout=30, what="job pod Running")
    assert job_condition(batch_v1, namespace, "train") is None
    # ... then completes.
    assert wait_for(lambda: job_condition(batch_v1, namespace, "train"),
                    timeout=60, what="job finished") == "Complete"
    j = batch_v1.read_namespaced_job_status("train", namespace)
    assert j.status.succeeded == 1 and not j.status.failed
    (p,) = pods(core_v1, namespace, "job-name=train")
    assert p.status.phase == "Succeeded"
    term = p.status.container_statuses[0].state.terminated
    assert term.exit_code == 0 and term.reason == "Completed"
    assert (term.finished_at - p.status.start_time).total_seconds() >= 5


def test_job_with_failing_pod_fails(namespace, core_v1, batch_v1, wait_for):
    batch_v1.create_namespaced_job(namespace, job("broken", annotations={
        "mlplatform.dev/kwok-fail": "true", "mlplatform.dev/kwok-exit-code": "3",
        "mlplatform.dev/kwok-complete-after": "1s"}))
    assert wait_for(lambda: job_condition(batch_v1, namespace, "broken"),
                    timeout=60, what="job finished") == "Failed"
    j = batch_v1.read_namespaced_job_status("broken", namespace)
    assert j.status.failed == 1 and not j.status.succeeded
    (p,) = pods(core_v1, namespace, "job-name=broken")
    assert p.status.phase == "Failed"
    assert p.status.container_statuses[0].state.terminated.exit_code == 3


# --------------------------------------------------------------------------- other kwok behaviours

def test_crashloop_and_image_pull_annotations(namespace, core_v1, apps_v1, wait_for):
    spec = client.V1PodSpec(containers=[container()])
    apps_v1.create_namespaced_deployment(namespace, deployment(
        "crashy", 1, spec, annotations={"mlplatform.dev/kwok-crashloop": "true"}))
    apps_v1.create_namespaced_deployment(namespace, deployment(
        "pully", 1, spec, annotations={"mlplatform.dev/kwok-image-pull-error": "true"}))

    def waiting(app, reason):
        def check():
            ps = pods(core_v1, namespace, f"app={app}")
            if len(ps) != 1 or not ps[0].status.container_statuses:
                return None
            cs = ps[0].status.container_statuses[0]
            return ps[0] if cs.state.waiting and cs.state.waiting.reason == reason else None
        return wait_for(check, timeout=60, what=f"{app} waiting in {reason}")

    crashy = waiting("crashy", "CrashLoopBackOff")
    cs = crashy.status.container_statuses[0]
    assert crashy.status.phase == "Running" and not cs.ready and cs.restart_count > 0
    assert cs.last_state.terminated.exit_code == 1
    pully = waiting("pully", "ImagePullBackOff")
    assert pully.status.phase == "Pending" and not pully.status.container_statuses[0].ready
    d = apps_v1.read_namespaced_deployment_status("crashy", namespace)
    assert not d.status.ready_replicas


def test_pod_deletion_and_garbage_collection(namespace, core_v1, apps_v1, wait_for):
    spec = client.V1PodSpec(containers=[container()])
    apps_v1.create_namespaced_deployment(namespace, deployment("gc", 2, spec))
    ps = wait_for(lambda: (lambda ps: ps if len(ps) == 2 and all(
        p.status.phase == "Running" for p in ps) else None)(pods(core_v1, namespace, "app=gc")),
        timeout=60, what="2 pods Running")
    victim = ps[0].metadata.name
    core_v1.delete_namespaced_pod(victim, namespace)  # default grace period: kwok removes it

    def replaced():
        names = {p.metadata.name: p.status.phase for p in pods(core_v1, namespace, "app=gc")}
        return victim not in names and len(names) == 2 and set(names.values()) == {"Running"}
    wait_for(replaced, timeout=60, what="deleted pod removed and replaced")
    apps_v1.delete_namespaced_deployment("gc", namespace, propagation_policy="Background")
    wait_for(lambda: not pods(core_v1, namespace, "app=gc")
             and not apps_v1.list_namespaced_replica_set(namespace).items,
             timeout=60, what="garbage collector removed ReplicaSet and pods")


# --------------------------------------------------------------------------- lifecycle

@pytest.mark.skipif(bool(os.environ.get("E2E_KUBECONFIG")),
                    reason="exercises the local control plane's own start/stop")
def test_down_leaves_no_process_or_listener(tmp_path, kubeconfig):
    """A second, separate cluster in its own run dir: up, then down leaves nothing."""
    import cluster

    c = cluster.Cluster(tmp_path / "second-cluster")
    try:
        kc = c.up()
        assert kc.is_file() and kc != Path(kubeconfig)
        assert c.is_running()
        # Idempotent: a second up finds it running and returns at once.
        t0 = time.monotonic()
        assert c.up() == kc
        assert time.monotonic() - t0 < 5
        state = cluster.State.load(c.run)
        pids = {n: p.pid for n, p in state.procs.items()}
        ports = set(state.ports.values())
        assert set(pids) == set(cluster.ORDER)
        assert ports <= cluster.listening_ports()
    finally:
        c.down()
    for name, pid in pids.items():
        assert not Path(f"/proc/{pid}").exists() or \
            Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in "ZX", \
            f"{name} (pid {pid}) still running"
    assert not (ports & cluster.listening_ports()), "a port is still listening after down"
    assert not c.is_running()
    c.down()  # harmless when nothing runs
    # The shared session cluster was not touched.
    assert cluster.Cluster().is_running()


@pytest.mark.skipif(bool(os.environ.get("E2E_KUBECONFIG")),
                    reason="exercises the local control plane's own start/stop")
def test_failing_component_is_reported_and_others_stopped(tmp_path, monkeypatch, kubeconfig):
    """A component that exits at start: up fails with its log tail, the rest is stopped."""
    import build
    import cluster

    real = build.cache_dir()
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    for comp in build.components():
        (fake_bin / f"{comp.name}.stamp").write_text((real / f"{comp.name}.stamp").read_text())
        if comp.name != "kube-scheduler":
            (fake_bin / comp.name).symlink_to(real / comp.name)
    broken = fake_bin / "kube-scheduler"
    broken.write_text("#!/bin/sh\necho 'boom: simulated scheduler start failure' >&2\nexit 1\n")
    broken.chmod(0o755)
    monkeypatch.setenv("MLPLATFORM_BIN_DIR", str(fake_bin))

    c = cluster.Cluster(tmp_path / "broken-cluster")
    with pytest.raises(cluster.ClusterError) as err:
        c.up(build_missing=False)
    msg = str(err.value)
    assert "kube-scheduler" in msg and "boom: simulated scheduler start failure" in msg
    state = cluster.State.load(c.run)
    assert not state.procs, f"processes left in state: {state.procs}"
    assert not (set(state.ports.values()) & cluster.listening_ports())
    assert not c.is_running()
    leftovers = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                argv0 = (proc / "cmdline").read_bytes().split(b"\0")[0].decode()
                st = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if argv0.startswith(str(fake_bin)) and st not in "ZX":
                leftovers.append((proc.name, argv0))
    assert not leftovers, f"components of the failed start still running: {leftovers}"


@pytest.mark.skipif(bool(os.environ.get("E2E_KUBECONFIG")),
                    reason="exercises the local control plane's own start/stop")
def test_dead_component_restarted_alone_nodes_added_and_recovered(tmp_path, kubeconfig):
    """On a second cluster: `up` restarts only what died (etcd's data kept), adds CPU nodes on request,
    kube-apiserver exits within seconds of SIGTERM with a watch open, and kwok brings a node marked
    Unknown (as the node controller does after an outage) back to Ready."""
    import signal
    import subprocess

    import cluster

    c = cluster.Cluster(tmp_path / "restart-cluster")
    try:
        c.up()
        api = cluster.Api(c.run, cluster.State.load(c.run).ports["apiserver"])
        marker = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kept"}, "data": {"k": "v"}}
        assert api.request("POST", "/api/v1/namespaces/default/configmaps", marker)[0] == 201
        before = cluster.State.load(c.run).procs
        watcher = subprocess.Popen([c.bin("kubectl"), "--kubeconfig", str(c.kubeconfig), "get", "pods", "-A", "-w"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(2)
        t0 = time.monotonic()
        os.kill(before["kube-apiserver"].pid, signal.SIGTERM)
        while before["kube-apiserver"].alive() and time.monotonic() - t0 < 30:
            time.sleep(0.1)
        assert time.monotonic() - t0 < 10, "kube-apiserver took longer than 10 s to exit on SIGTERM"
        watcher.kill()
        os.kill(before["kwok"].pid, signal.SIGKILL)
        time.sleep(0.5)

        c.up(cpu_nodes=5)
        after = cluster.State.load(c.run).procs
        for name in ("etcd", "kube-controller-manager", "kube-scheduler"):
            assert after[name].pid == before[name].pid, f"{name} was restarted although it ran"
        for name in ("kube-apiserver", "kwok"):
            assert after[name].pid != before[name].pid and after[name].alive(), name
        status, kept = api.request("GET", "/api/v1/namespaces/default/configmaps/kept")
        assert status == 200 and kept["data"] == {"k": "v"}, "etcd's data was not kept"
        status, nodes = api.request("GET", "/api/v1/nodes")
        cpu = sorted(n["metadata"]["name"] for n in nodes["items"] if n["metadata"]["name"].startswith("kwok-cpu-"))
        assert cpu == [f"kwok-cpu-{i}" for i in range(5)]
        assert cluster.State.load(c.run).cpu_nodes == 5

        unknown = {"status": {"conditions": [{"type": "Ready", "status": "Unknown", "reason": "NodeStatusUnknown",
                                              "message": "Kubelet stopped posting node status."}]}}
        status, _ = api.request("PATCH", "/api/v1/nodes/kwok-cpu-4/status", unknown)
        assert status == 200

        def ready(name: str) -> bool:
            _, node = api.request("GET", f"/api/v1/nodes/{name}")
            return any(cond["type"] == "Ready" and cond["status"] == "True" for cond in node["status"]["conditions"])

        deadline = time.monotonic() + 30
        while not ready("kwok-cpu-4") and time.monotonic() < deadline:
            time.sleep(0.5)
        assert ready("kwok-cpu-4"), "kwok did not bring the node back to Ready"
    finally:
        c.down()
