"""TrainingJob failurePolicy on the real control plane, without Kueue: a worker failure restarts the whole
group (same run, all pods new), a non-retryable exit code fails the run at once, an evicted worker
(the Eviction API: pod condition DisruptionTarget) restarts the run without counting."""

from __future__ import annotations

import json

from harness import condition, get_cr, resource, wait_condition

LONG_RUN = {"mlplatform.dev/kwok-complete-after": "300s"}
DISTRIBUTED = {"image": "python:3.12", "workers": 2, "resources": {"cpu": "1", "memory": "1Gi"}}


def run_pods(core_v1, namespace: str, name: str) -> list:
    pods = core_v1.list_namespaced_pod(namespace, label_selector=f"mlplatform.dev/owner=trainingjob.{name}").items
    return [p for p in pods if p.metadata.deletion_timestamp is None]


def running_pods(core_v1, namespace: str, name: str, workers: int):
    pods = run_pods(core_v1, namespace, name)
    return len(pods) == workers and all(p.status.phase == "Running" for p in pods) and pods


def status_of(custom, namespace: str, name: str) -> dict:
    return get_cr(custom, "TrainingJob", namespace, name).get("status") or {}


def fail_worker(kubectl, namespace: str, pod: str, code: int) -> None:
    """kwok's pod-fail stage (e2e/controlplane/stages/pod-fail.yaml) ends the pod with that exit code."""
    kubectl.run("annotate", f"pod/{pod}", "-n", namespace, "--overwrite", "mlplatform.dev/kwok-fail=true",
                f"mlplatform.dev/kwok-exit-code={code}", "mlplatform.dev/kwok-complete-after=1s")


def events(core_v1, namespace: str, uid: str) -> list:
    return core_v1.list_namespaced_event(namespace, field_selector=f"involvedObject.uid={uid}").items


def test_worker_failure_restarts_the_whole_group(operator, kubectl, custom, namespace, core_v1, batch_v1, wait_for):
    spec = {**DISTRIBUTED, "failurePolicy": {"maxRestarts": 1, "nonRetryableExitCodes": [2]}}
    kubectl.apply(resource("TrainingJob", "flaky", spec, LONG_RUN), namespace)
    first = wait_for(lambda: running_pods(core_v1, namespace, "flaky", 2), timeout=60, what="2 workers running")
    job = batch_v1.read_namespaced_job("flaky-1", namespace)
    assert job.spec.backoff_limit == 0  # a distributed attempt ends at its first failing worker
    rules = job.spec.pod_failure_policy.rules
    assert [r.action for r in rules] == ["FailJob", "FailJob"]
    assert rules[0].on_pod_conditions[0].type == "DisruptionTarget" and rules[1].on_exit_codes.values == [2]
    worker1 = next(p for p in first if p.metadata.name.startswith("flaky-1-1-"))
    fail_worker(kubectl, namespace, worker1.metadata.name, 1)  # retryable

    def restarted():
        st = status_of(custom, namespace, "flaky")
        pods = running_pods(core_v1, namespace, "flaky", 2)
        return (st.get("phase") == "Running" and pods and not {p.metadata.uid for p in pods} & {p.metadata.uid for p in first}
                and (st, pods))
    st, pods = wait_for(restarted, timeout=90, what="the whole group running again, all pods new")
    assert st["run"] == 1 and len(st["runs"]) == 1
    assert st["runs"][0]["restarts"] == 1 and not st["runs"][0].get("disruptions")
    new_job = batch_v1.read_namespaced_job("flaky-1", namespace)
    assert new_job.metadata.uid != job.metadata.uid  # same Job name and run number, a new attempt
    assert all({e.name: e.value for e in p.spec.containers[0].env}["MLPLATFORM_RUN"] == "1" for p in pods)
    uid = get_cr(custom, "TrainingJob", namespace, "flaky")["metadata"]["uid"]
    restarts = [e for e in events(core_v1, namespace, uid) if e.reason == "RunRestarted"]
    assert len(restarts) == 1 and "restart 1/1" in restarts[0].message and restarts[0].type == "Warning", \
        [(e.type, e.message, e.count, e.first_timestamp) for e in restarts]

    # The restart budget spent: the next failure fails the run.
    fail_worker(kubectl, namespace, pods[0].metadata.name, 1)
    body = wait_condition(wait_for, custom, "TrainingJob", namespace, "flaky", "Failed", "True", timeout=90)
    assert body["status"]["runs"][0]["restarts"] == 1 and "after 1 restarts" in condition(body, "Failed")["message"]


def test_non_retryable_exit_code_fails_the_run_at_once(operator, kubectl, custom, namespace, core_v1, batch_v1,
                                                       wait_for):
    spec = {**DISTRIBUTED, "failurePolicy": {"maxRestarts": 3, "nonRetryableExitCodes": [2, 42]}}
    kubectl.apply(resource("TrainingJob", "bad-data", spec, LONG_RUN), namespace)
    pods = wait_for(lambda: running_pods(core_v1, namespace, "bad-data", 2), timeout=60, what="2 workers running")
    worker1 = next(p for p in pods if p.metadata.name.startswith("bad-data-1-1-"))
    fail_worker(kubectl, namespace, worker1.metadata.name, 42)
    body = wait_condition(wait_for, custom, "TrainingJob", namespace, "bad-data", "Failed", "True",
                          "NonRetryableExitCode", timeout=90)
    message = condition(body, "Failed")["message"]
    assert f"worker 1 (pod {worker1.metadata.name})" in message and "code 42" in message, message
    assert body["status"]["phase"] == "Failed" and not body["status"]["runs"][0].get("restarts")
    assert condition(body, "Stalled")["status"] == "True"
    # No new attempt: the failed Job is the one that ran.
    assert batch_v1.read_namespaced_job("bad-data-1", namespace).metadata.uid == pods[0].metadata.labels[
        "batch.kubernetes.io/controller-uid"]


def test_evicted_worker_restarts_the_run_without_counting(operator, kubectl, custom, namespace, core_v1, wait_for):
    spec = {**DISTRIBUTED, "failurePolicy": {"maxRestarts": 0}}  # restartOnPreemption defaults to true
    kubectl.apply(resource("TrainingJob", "evicted", spec, LONG_RUN), namespace)
    first = wait_for(lambda: running_pods(core_v1, namespace, "evicted", 2), timeout=60, what="2 workers running")
    victim = first[0].metadata.name
    eviction = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": victim, "namespace": namespace}}
    kubectl.run("create", "--raw", f"/api/v1/namespaces/{namespace}/pods/{victim}/eviction", "-f", "-",
                stdin=json.dumps(eviction))

    def restarted():
        st = status_of(custom, namespace, "evicted")
        pods = running_pods(core_v1, namespace, "evicted", 2)
        return (st.get("phase") == "Running" and pods and not {p.metadata.uid for p in pods} & {p.metadata.uid for p in first}
                and st)
    st = wait_for(restarted, timeout=90, what="the run running again after the eviction")
    record = st["runs"][0]
    assert st["run"] == 1 and record["disruptions"] == 1 and not record.get("restarts"), record
    uid = get_cr(custom, "TrainingJob", namespace, "evicted")["metadata"]["uid"]
    restarts = [e for e in events(core_v1, namespace, uid) if e.reason == "RunRestarted"]
    assert len(restarts) == 1 and restarts[0].type == "Normal" and "disrupted" in restarts[0].message


def test_a_failure_policy_edit_keeps_the_running_job(operator, kubectl, custom, namespace, core_v1, batch_v1, wait_for):
    """failurePolicy and activeDeadlineSeconds start no run: the running Job and its pods go on (same uid, same
    run), the Job takes the new deadline, and keeps the podFailurePolicy it was created with (immutable)."""
    spec = {**DISTRIBUTED, "failurePolicy": {"maxRestarts": 1}}
    kubectl.apply(resource("TrainingJob", "steady", spec, LONG_RUN), namespace)
    pods = wait_for(lambda: running_pods(core_v1, namespace, "steady", 2), timeout=60, what="2 workers running")
    wait_for(lambda: status_of(custom, namespace, "steady").get("phase") == "Running", timeout=60,
             what="the run reported Running (its pods Ready) before the edit")
    job = batch_v1.read_namespaced_job("steady-1", namespace)
    edited = {**spec, "activeDeadlineSeconds": 86400,
              "failurePolicy": {"maxRestarts": 3, "restartOnPreemption": False, "nonRetryableExitCodes": [2]}}
    kubectl.apply(resource("TrainingJob", "steady", edited, LONG_RUN), namespace)

    body = wait_for(lambda: (b := get_cr(custom, "TrainingJob", namespace, "steady"))
                    and b["status"].get("observedGeneration") == b["metadata"]["generation"] == 2
                    and b["status"].get("phase") == "Running" and b,
                    timeout=60, what="the edit reconciled, the run still Running")
    st = body["status"]
    assert st["run"] == 1 and [r["run"] for r in st["runs"]] == [1] and st["phase"] == "Running", st
    assert st["runGeneration"] == 1 and not [r for r in st["runs"] if r.get("phase") == "Superseded"]
    now = batch_v1.read_namespaced_job("steady-1", namespace)
    assert now.metadata.uid == job.metadata.uid
    assert now.spec.active_deadline_seconds == 86400
    assert now.spec.pod_failure_policy == job.spec.pod_failure_policy  # as created: Kubernetes keeps it
    assert {p.metadata.uid for p in run_pods(core_v1, namespace, "steady")} == {p.metadata.uid for p in pods}
    jobs = batch_v1.list_namespaced_job(namespace, label_selector="mlplatform.dev/owner=trainingjob.steady").items
    assert [j.metadata.name for j in jobs] == ["steady-1"]
