"""TrainingJobs admitted by a real Kueue (v0.17, e2e/controlplane/kueue.py): in order and within quota,
a distributed run all at once or not at all, preemption by priority restarting the lower run without
using a restart; our status while a run waits (Pending, WaitingForAdmission, the LocalQueue's name)."""

from __future__ import annotations

import json
import time

from harness import ROOT, condition, get_cr, resource, wait_condition

GPU_WORKER = {"cpu": "8", "memory": "64Gi", "gpu": {"count": 8, "type": "nvidia-h100-80gb"}}
KUBECTL_CAPTURE = ROOT / ".run" / "kueue-queueing-kubectl.txt"


def queues(kubectl, namespace: str, gpus: int, preemption: bool = False) -> str:
    """A ResourceFlavor, a ClusterQueue with `gpus` GPUs (this namespace only), LocalQueue team-a."""
    cq = f"cq-{namespace}"
    cluster_queue = {
        "apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "ClusterQueue", "metadata": {"name": cq},
        "spec": {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
            "resourceGroups": [{"coveredResources": ["cpu", "memory", "nvidia.com/gpu"], "flavors": [
                {"name": "h100", "resources": [{"name": "cpu", "nominalQuota": "256"},
                                               {"name": "memory", "nominalQuota": "2Ti"},
                                               {"name": "nvidia.com/gpu", "nominalQuota": gpus}]}]}],
            **({"preemption": {"withinClusterQueue": "LowerPriority"}} if preemption else {}),
        },
    }
    objects = [
        {"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "ResourceFlavor", "metadata": {"name": "h100"}},
        cluster_queue,
        {"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "LocalQueue",
         "metadata": {"name": "team-a", "namespace": namespace}, "spec": {"clusterQueue": cq}},
    ]
    kubectl.run("apply", "-f", "-", stdin="\n---\n".join(json.dumps(o) for o in objects))
    return cq


def status_of(custom, namespace: str, name: str) -> dict:
    return get_cr(custom, "TrainingJob", namespace, name).get("status") or {}


def phase(custom, namespace: str, name: str) -> str | None:
    return status_of(custom, namespace, name).get("phase")


def live_pods(core_v1, namespace: str, name: str) -> list:
    return [p for p in core_v1.list_namespaced_pod(namespace, label_selector=f"mlplatform.dev/owner=trainingjob.{name}").items
            if p.metadata.deletion_timestamp is None]


def test_one_8gpu_run_at_a_time_the_other_waits_for_admission(kueue_operator, kubectl, custom, namespace, core_v1,
                                                             batch_v1, wait_for):
    queues(kubectl, namespace, gpus=8)
    spec = {"image": "python:3.12", "queueName": "team-a", "resources": GPU_WORKER}
    kubectl.apply(resource("TrainingJob", "first", spec, {"mlplatform.dev/kwok-complete-after": "25s"}), namespace)
    wait_for(lambda: phase(custom, namespace, "first") == "Running", timeout=60, what="first admitted and running")
    body = get_cr(custom, "TrainingJob", namespace, "first")
    assert condition(body, "Admitted")["status"] == "True" and condition(body, "QuotaReserved")["status"] == "True"
    kubectl.apply(resource("TrainingJob", "second", spec, {"mlplatform.dev/kwok-complete-after": "3s"}), namespace)
    body = wait_condition(wait_for, custom, "TrainingJob", namespace, "second", "Ready", "False", "WaitingForAdmission",
                          timeout=60)
    wait_for(lambda: condition(get_cr(custom, "TrainingJob", namespace, "second"), "QuotaReserved") is not None,
             timeout=30, what="second's Workload conditions mirrored")
    body = get_cr(custom, "TrainingJob", namespace, "second")
    assert body["status"]["phase"] == "Pending"
    assert "LocalQueue 'team-a'" in condition(body, "Ready")["message"], condition(body, "Ready")
    assert condition(body, "QuotaReserved")["status"] == "False"
    assert batch_v1.read_namespaced_job("second-1", namespace).spec.suspend is True
    assert live_pods(core_v1, namespace, "second") == []
    # What `kubectl get` shows meanwhile: the TrainingJobs' PHASE and QUEUE, Kueue's Workloads.
    shown = kubectl.run("get", "tj,workloads", "-A").stdout
    KUBECTL_CAPTURE.write_text(f"$ kubectl get tj,workloads -A\n{shown}")
    print(f"\n$ kubectl get tj,workloads -A\n{shown}")
    assert "QUEUE" in shown and "team-a" in shown and "Pending" in shown
    uid = body["metadata"]["uid"]
    # The first finishes; the second is admitted and runs.
    wait_for(lambda: phase(custom, namespace, "first") == "Succeeded", timeout=90, what="first succeeded")
    wait_for(lambda: phase(custom, namespace, "second") in ("Running", "Succeeded"), timeout=60,
             what="second admitted once the first finished")
    body = wait_condition(wait_for, custom, "TrainingJob", namespace, "second", "Succeeded", "True", timeout=90)
    assert condition(body, "Admitted")["status"] == "True" or condition(body, "Admitted") is None
    reasons = {e.reason for e in core_v1.list_namespaced_event(namespace, field_selector=f"involvedObject.uid={uid}").items}
    assert "Admitted" in reasons, reasons


def test_distributed_run_is_admitted_whole_or_not_at_all(kueue_operator, kubectl, custom, namespace, core_v1,
                                                         batch_v1, wait_for):
    cq = queues(kubectl, namespace, gpus=16)
    spec = {"image": "python:3.12", "queueName": "team-a", "workers": 4, "resources": GPU_WORKER}
    kubectl.apply(resource("TrainingJob", "big", spec, {"mlplatform.dev/kwok-complete-after": "300s"}), namespace)
    body = wait_for(lambda: (b := get_cr(custom, "TrainingJob", namespace, "big")) and condition(b, "QuotaReserved")
                    and b, timeout=60, what="Kueue's verdict on the 4 x 8 GPU run")
    assert body["status"]["phase"] == "Pending" and condition(body, "Ready")["reason"] == "WaitingForAdmission"
    assert condition(body, "QuotaReserved")["status"] == "False"
    assert "nvidia.com/gpu" in condition(body, "Ready")["message"], condition(body, "Ready")
    # Never partly started: no worker pod, the Job suspended, while the quota (16) is short of 32.
    for _ in range(5):
        assert live_pods(core_v1, namespace, "big") == []
        assert batch_v1.read_namespaced_job("big-1", namespace).spec.suspend is True
        time.sleep(1)
    # Quota for all four: all four start together.
    kubectl.run("patch", "clusterqueue", cq, "--type=json", "-p",
                '[{"op":"replace","path":"/spec/resourceGroups/0/flavors/0/resources/2/nominalQuota","value":32}]')
    wait_for(lambda: phase(custom, namespace, "big") == "Running", timeout=60, what="admitted whole")
    pods = live_pods(core_v1, namespace, "big")
    assert len(pods) == 4 and all(p.status.phase == "Running" for p in pods)


def test_higher_priority_run_preempts_a_lower_one_which_restarts_without_using_a_restart(
        kueue_operator, kubectl, custom, namespace, core_v1, wait_for):
    queues(kubectl, namespace, gpus=8, preemption=True)
    for name, value in ((f"low-{namespace}", 100), (f"high-{namespace}", 1000)):
        kubectl.run("create", "priorityclass", name, f"--value={value}")
    try:
        low = {"image": "python:3.12", "queueName": "team-a", "resources": GPU_WORKER,
               "scheduling": {"priorityClassName": f"low-{namespace}"},
               "failurePolicy": {"maxRestarts": 0, "restartOnPreemption": True}}
        kubectl.apply(resource("TrainingJob", "low", low, {"mlplatform.dev/kwok-complete-after": "300s"}), namespace)
        wait_for(lambda: phase(custom, namespace, "low") == "Running", timeout=60, what="low running")
        first = {p.metadata.uid for p in live_pods(core_v1, namespace, "low")}
        high = {**low, "scheduling": {"priorityClassName": f"high-{namespace}"}}
        kubectl.apply(resource("TrainingJob", "high", high, {"mlplatform.dev/kwok-complete-after": "5s"}), namespace)
        body = wait_for(lambda: (b := get_cr(custom, "TrainingJob", namespace, "low")) and
                        (b["status"].get("runs") or [{}])[0].get("disruptions") and b, timeout=60,
                        what="low preempted, the restart recorded")
        record = body["status"]["runs"][0]
        assert record["disruptions"] == 1 and not record.get("restarts"), record
        wait_for(lambda: phase(custom, namespace, "high") == "Succeeded", timeout=90, what="high ran")
        # Admitted again: the whole run starts over (new pods), same run number, no restart used.
        wait_for(lambda: phase(custom, namespace, "low") == "Running"
                 and {p.metadata.uid for p in live_pods(core_v1, namespace, "low")} - first
                 and not first & {p.metadata.uid for p in live_pods(core_v1, namespace, "low")},
                 timeout=90, what="low re-admitted and running again")
        st = status_of(custom, namespace, "low")
        assert st["run"] == 1 and st["runs"][0]["disruptions"] == 1 and not st["runs"][0].get("restarts")
        uid = get_cr(custom, "TrainingJob", namespace, "low")["metadata"]["uid"]
        evs = core_v1.list_namespaced_event(namespace, field_selector=f"involvedObject.uid={uid}").items
        assert any(e.reason == "RunRestarted" and "Preempted" in e.message for e in evs), [(e.reason, e.message) for e in evs]
    finally:
        for name in (f"low-{namespace}", f"high-{namespace}"):
            kubectl.run("delete", "priorityclass", name, "--ignore-not-found", check=False)


def test_a_verdict_that_only_the_workload_carries_reaches_the_status_at_once(kueue_operator, kubectl, custom,
                                                                             namespace, batch_v1, wait_for):
    """The operator watches the Workloads of its Jobs: when Kueue re-evaluates a waiting run (its ClusterQueue
    grew, still too small), only the Workload changes (the Job stays suspended, the TrainingJob as it was), and
    the new verdict is in our status within seconds, not at the next resync (600 s)."""
    cq = queues(kubectl, namespace, gpus=8)
    spec = {"image": "python:3.12", "queueName": "team-a", "workers": 4, "resources": GPU_WORKER}  # 32 GPUs
    kubectl.apply(resource("TrainingJob", "wide", spec, {"mlplatform.dev/kwok-complete-after": "300s"}), namespace)

    def ready_message_with(text: str):
        body = get_cr(custom, "TrainingJob", namespace, "wide")
        ready = condition(body, "Ready") or {}
        return text in (ready.get("message") or "") and body

    body = wait_for(lambda: ready_message_with("maximum capacity (8)"), timeout=60, what="Kueue's first verdict")
    assert body["status"]["phase"] == "Pending" and condition(body, "QuotaReserved")["status"] == "False"
    # The job controller and Kueue may still be writing the new Job (its status, Kueue's annotations): the
    # proof below needs a Job at rest, so that a change after the patch can only come from the patch.
    job_version = settled_version(lambda: batch_v1.read_namespaced_job("wide-1", namespace), wait_for)
    kubectl.run("patch", "clusterqueue", cq, "--type=json", "-p",
                '[{"op":"replace","path":"/spec/resourceGroups/0/flavors/0/resources/2/nominalQuota","value":16}]')
    started = time.monotonic()
    body = wait_for(lambda: ready_message_with("maximum capacity (16)"), timeout=30,
                    what="the Workload's new verdict in the TrainingJob's status")
    print(f"\nthe Workload's new verdict reached the status after {time.monotonic() - started:.1f} s")
    assert condition(body, "QuotaReserved")["status"] == "False" and "(16)" in condition(body, "QuotaReserved")["message"]
    job = batch_v1.read_namespaced_job("wide-1", namespace)
    writers = [(m.manager, m.operation, str(m.time)) for m in job.metadata.managed_fields]
    assert job.spec.suspend is True and job.metadata.resource_version == job_version, \
        f"only the Workload changed; the Job's writers: {writers}"


def settled_version(read, wait_for, quiet_seconds: float = 3.0) -> str:
    """The resourceVersion of an object once it has not changed for quiet_seconds."""
    seen = {"version": None, "since": 0.0}

    def quiet():
        version = read().metadata.resource_version
        if version != seen["version"]:
            seen.update(version=version, since=time.monotonic())
        return time.monotonic() - seen["since"] >= quiet_seconds and version
    return wait_for(quiet, timeout=30, interval=0.5, what=f"the object unchanged for {quiet_seconds} s")


def test_a_queue_edit_moves_a_waiting_run_without_starting_another(kueue_operator, kubectl, custom, namespace,
                                                                   batch_v1, wait_for):
    """queueName names a LocalQueue that does not exist: the run waits. Fixing queueName starts no run: the same
    Job, still waiting, moves to the new queue, and Kueue admits it there."""
    queues(kubectl, namespace, gpus=8)
    spec = {"image": "python:3.12", "queueName": "team-b", "resources": GPU_WORKER}
    kubectl.apply(resource("TrainingJob", "misqueued", spec, {"mlplatform.dev/kwok-complete-after": "300s"}), namespace)
    wait_condition(wait_for, custom, "TrainingJob", namespace, "misqueued", "Ready", "False", "LocalQueueNotFound",
                   timeout=60)
    job = batch_v1.read_namespaced_job("misqueued-1", namespace)
    assert job.spec.suspend is True

    kubectl.apply(resource("TrainingJob", "misqueued", {**spec, "queueName": "team-a"},
                           {"mlplatform.dev/kwok-complete-after": "300s"}), namespace)
    wait_for(lambda: phase(custom, namespace, "misqueued") == "Running", timeout=60, what="admitted in team-a")
    st = status_of(custom, namespace, "misqueued")
    assert st["run"] == 1 and [r["run"] for r in st["runs"]] == [1], st
    moved = batch_v1.read_namespaced_job("misqueued-1", namespace)
    assert moved.metadata.uid == job.metadata.uid and moved.metadata.labels["kueue.x-k8s.io/queue-name"] == "team-a"

    # Admitted: Kueue refuses to move a running Job; the run stays where it was admitted, and goes on.
    kubectl.apply(resource("TrainingJob", "misqueued", {**spec, "queueName": "team-c"},
                           {"mlplatform.dev/kwok-complete-after": "300s"}), namespace)
    body = wait_for(lambda: (b := get_cr(custom, "TrainingJob", namespace, "misqueued"))
                    and b["status"].get("observedGeneration") == b["metadata"]["generation"] == 3 and b,
                    timeout=60, what="the second edit reconciled")
    assert body["status"]["phase"] == "Running" and body["status"]["run"] == 1, body["status"]
    kept = batch_v1.read_namespaced_job("misqueued-1", namespace)
    assert kept.metadata.uid == job.metadata.uid and kept.metadata.labels["kueue.x-k8s.io/queue-name"] == "team-a"
