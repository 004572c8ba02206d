"""The operator on a real control plane: each kind from apply to Ready, failures with reasons,
drift, the HPA left alone, runs, dependencies, API server validation and garbage collection."""

from __future__ import annotations

import time

from kubernetes.client.rest import ApiException

from harness import condition, feature_view_spec, get_cr, resource, wait_condition

CPU_MODEL = {
    "model": {"uri": "s3://models/churn/v3/", "format": "sklearn"},
    "runtime": {"preset": "sklearn"},
    "resources": {"cpu": "500m", "memory": "1Gi"},
    "replicas": 2,
}


def owned_by(obj, uid: str) -> bool:
    return any(ref.uid == uid and ref.controller for ref in obj.metadata.owner_references or [])


def test_model_deployment_becomes_ready_with_its_children(operator, kubectl, custom, namespace, apps_v1, core_v1,
                                                          wait_for):
    kubectl.apply(resource("ModelDeployment", "churn", CPU_MODEL), namespace)
    body = wait_condition(wait_for, custom, "ModelDeployment", namespace, "churn", "Ready", "True")
    status = body["status"]
    assert status["phase"] == "Ready" and status["replicaSummary"] == "2/2"
    assert status["observedGeneration"] == body["metadata"]["generation"]
    assert status["url"] == f"http://churn.{namespace}.svc.cluster.local"
    assert condition(body, "Reconciling")["status"] == "False" and condition(body, "Stalled")["status"] == "False"
    uid = body["metadata"]["uid"]
    deployment = apps_v1.read_namespaced_deployment("churn", namespace)
    assert owned_by(deployment, uid) and deployment.spec.replicas == 2
    assert owned_by(core_v1.read_namespaced_service("churn", namespace), uid)
    events = core_v1.list_namespaced_event(namespace, field_selector=f"involvedObject.uid={uid}").items
    assert any(e.reason == "AllReplicasAvailable" for e in events)
    # Settled: no status rewrites while nothing changes.
    version = get_cr(custom, "ModelDeployment", namespace, "churn")["metadata"]["resourceVersion"]
    time.sleep(3)
    assert get_cr(custom, "ModelDeployment", namespace, "churn")["metadata"]["resourceVersion"] == version


def test_missing_claim_is_not_ready_until_it_exists(operator, kubectl, custom, namespace, wait_for):
    spec = {**CPU_MODEL, "model": {"uri": "pvc://model-store/churn/v3"}, "replicas": 1}
    kubectl.apply(resource("ModelDeployment", "from-claim", spec), namespace)
    body = wait_condition(wait_for, custom, "ModelDeployment", namespace, "from-claim", "Ready", "False", "ClaimNotFound")
    assert "model-store" in condition(body, "Ready")["message"]
    kubectl.run("apply", "-f", "-", stdin=f"""
apiVersion: v1
kind: PersistentVolume
metadata: {{name: pv-{namespace}}}
spec:
  capacity: {{storage: 1Gi}}
  accessModes: [ReadOnlyMany]
  storageClassName: ""
  hostPath: {{path: /tmp/models}}
  claimRef: {{namespace: {namespace}, name: model-store}}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {{name: model-store, namespace: {namespace}}}
spec:
  accessModes: [ReadOnlyMany]
  storageClassName: ""
  volumeName: pv-{namespace}
  resources: {{requests: {{storage: 1Gi}}}}
""")
    try:
        wait_condition(wait_for, custom, "ModelDeployment", namespace, "from-claim", "Ready", "True", timeout=90)
    finally:
        kubectl.run("delete", "pv", f"pv-{namespace}", "--wait=false", check=False)


def test_gpu_model_lands_on_gpu_nodes_and_the_hpa_keeps_replicas(operator, kubectl, custom, namespace, apps_v1,
                                                                core_v1, wait_for):
    spec = {
        "model": {"uri": "hf://meta-llama/Llama-3.1-8B-Instruct"},
        "runtime": {"preset": "vllm"},
        "resources": {"cpu": "8", "memory": "64Gi", "gpu": {"count": 1, "type": "nvidia-h100-80gb"}},
        "autoscaling": {"minReplicas": 2, "maxReplicas": 6, "targets": {"cpuUtilization": 70}},
    }
    kubectl.apply(resource("ModelDeployment", "llm", spec), namespace)
    wait_condition(wait_for, custom, "ModelDeployment", namespace, "llm", "Ready", "True", timeout=90)
    pods = core_v1.list_namespaced_pod(namespace, label_selector="app.kubernetes.io/instance=llm").items
    assert len(pods) == 2
    for pod in pods:
        node = core_v1.read_node(pod.spec.node_name)
        assert node.metadata.labels["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3"
        assert pod.spec.containers[0].resources.limits["nvidia.com/gpu"] == "1"
    deployment = apps_v1.read_namespaced_deployment("llm", namespace)
    owners = {f.manager for f in deployment.metadata.managed_fields if "f:replicas" in str(f.fields_v1)}
    assert "mlplatform" not in owners  # the HPA's scale writes own replicas
    # The HPA (or anyone through /scale) changes replicas; the operator leaves them alone.
    kubectl.run("scale", "deployment/llm", "-n", namespace, "--replicas=3")
    kubectl.run("annotate", "modeldeployment/llm", "-n", namespace, "touch=1")  # force a reconcile
    wait_for(lambda: get_cr(custom, "ModelDeployment", namespace, "llm")["status"].get("replicas") == 3,
             what="status follows the scaled Deployment")
    time.sleep(2)
    assert apps_v1.read_namespaced_deployment("llm", namespace).spec.replicas == 3


def test_unschedulable_gpu_request_says_why(operator, kubectl, custom, namespace, wait_for):
    spec = {**CPU_MODEL, "resources": {"cpu": "1", "memory": "1Gi", "gpu": {"count": 16}}, "replicas": 1}
    kubectl.apply(resource("ModelDeployment", "too-big", spec), namespace)
    body = wait_condition(wait_for, custom, "ModelDeployment", namespace, "too-big", "Ready", "False", "Unschedulable")
    assert "nvidia.com/gpu" in condition(body, "Ready")["message"]
    assert condition(body, "Reconciling")["status"] == "True"


def test_crash_looping_and_image_pull_failures_are_not_ready(operator, kubectl, custom, namespace, wait_for):
    for name, annotation, reason in (("crashes", "mlplatform.dev/kwok-crashloop", "CrashLoopBackOff"),
                                     ("no-image", "mlplatform.dev/kwok-image-pull-error", "ImagePullBackOff")):
        kubectl.apply(resource("ModelDeployment", name, {**CPU_MODEL, "replicas": 1}, {annotation: "true"}), namespace)
        body = wait_condition(wait_for, custom, "ModelDeployment", namespace, name, "Ready", "False", reason)
        assert "container server" in condition(body, "Ready")["message"]


def test_drifted_children_are_put_back(operator, kubectl, custom, namespace, apps_v1, core_v1, wait_for):
    kubectl.apply(resource("ModelDeployment", "drift", CPU_MODEL), namespace)
    wait_condition(wait_for, custom, "ModelDeployment", namespace, "drift", "Ready", "True")
    kubectl.run("set", "image", "deployment/drift", "-n", namespace, "server=evil/image:1")
    wait_for(lambda: apps_v1.read_namespaced_deployment("drift", namespace).spec.template.spec.containers[0].image
             == "kserve/sklearnserver:v0.15.2", timeout=30, what="image restored")
    core_v1.delete_namespaced_service("drift", namespace)
    wait_for(lambda: core_v1.read_namespaced_service("drift", namespace), timeout=30, what="service re-created")


def test_training_job_succeeds_with_an_artifact(operator, kubectl, custom, namespace, wait_for):
    spec = {"image": "python:3.12", "command": ["python", "train.py"], "resources": {"cpu": "2", "memory": "4Gi"},
            "output": {"uri": "s3://models/churn"}}
    kubectl.apply(resource("TrainingJob", "train", spec), namespace)
    body = wait_condition(wait_for, custom, "TrainingJob", namespace, "train", "Ready", "True", timeout=90)
    status = body["status"]
    assert status["phase"] == "Succeeded" and status["run"] == 1
    assert status["artifactUri"] == "s3://models/churn/run-1/"
    assert status["runs"][0]["phase"] == "Succeeded" and status["runs"][0]["artifactUri"] == status["artifactUri"]
    assert status["workers"]["succeeded"] == 1 and status["completionTime"]
    assert condition(body, "Succeeded")["status"] == "True" and condition(body, "Reconciling")["status"] == "False"


def test_failing_training_pod_fails_the_run_with_its_reason(operator, kubectl, custom, namespace, wait_for):
    spec = {"image": "python:3.12", "backoffLimit": 0}
    annotations = {"mlplatform.dev/kwok-fail": "true", "mlplatform.dev/kwok-exit-code": "3"}
    kubectl.apply(resource("TrainingJob", "broken", spec, annotations), namespace)
    body = wait_condition(wait_for, custom, "TrainingJob", namespace, "broken", "Stalled", "True", timeout=90)
    assert body["status"]["phase"] == "Failed"
    failed = condition(body, "Failed")
    assert failed["status"] == "True" and failed["reason"] == "BackoffLimitExceeded"
    assert "exited with code 3" in failed["message"]
    assert condition(body, "Ready")["status"] == "False"


def test_spec_change_starts_a_new_run_and_supersedes_the_running_one(operator, kubectl, custom, namespace,
                                                                      batch_v1, wait_for):
    annotations = {"mlplatform.dev/kwok-complete-after": "300s"}
    spec = {"image": "python:3.12", "args": ["--epochs", "1"], "workers": 2,
            "resources": {"cpu": "1", "memory": "1Gi"}}
    kubectl.apply(resource("TrainingJob", "runs", spec, annotations), namespace)
    wait_for(lambda: get_cr(custom, "TrainingJob", namespace, "runs").get("status", {}).get("phase") == "Running",
             timeout=60, what="run 1 running")
    kubectl.apply(resource("TrainingJob", "runs", {**spec, "args": ["--epochs", "2"]}, annotations), namespace)
    body = wait_for(lambda: (b := get_cr(custom, "TrainingJob", namespace, "runs"))["status"].get("run") == 2
                    and b["status"]["phase"] == "Running" and b, timeout=60, what="run 2 running")
    runs = {r["run"]: r for r in body["status"]["runs"]}
    assert runs[1]["phase"] == "Superseded" and runs[2]["job"] == "runs-2" and runs[2]["generation"] == 2

    def run_one_gone():
        try:
            job = batch_v1.read_namespaced_job("runs-1", namespace)
            return job.metadata.deletion_timestamp is not None
        except ApiException as err:
            return err.status == 404
    wait_for(run_one_gone, timeout=30, what="superseded Job stopped")
    assert batch_v1.read_namespaced_job("runs-2", namespace).spec.completions == 2


def test_queued_run_without_kueue_says_why_it_waits(operator, kubectl, custom, namespace, batch_v1, wait_for):
    spec = {"image": "python:3.12", "queueName": "team-a"}
    kubectl.apply(resource("TrainingJob", "queued", spec), namespace)
    body = wait_condition(wait_for, custom, "TrainingJob", namespace, "queued", "Stalled", "True", "KueueNotInstalled")
    assert body["status"]["phase"] == "Pending"
    assert "Kueue is not installed" in condition(body, "Ready")["message"]
    kubectl.run("annotate", "trainingjob/queued", "-n", namespace, "touch=1")  # more reconciles
    time.sleep(3)
    job = batch_v1.read_namespaced_job("queued-1", namespace)
    assert job.spec.suspend is True and job.metadata.labels["kueue.x-k8s.io/queue-name"] == "team-a"
    assert job.status.active in (None, 0)
    # Kueue, once installed, owns suspend: our field manager holds no claim on it.
    owners = {f.manager for f in job.metadata.managed_fields if "f:suspend" in str(f.fields_v1)}
    assert "mlplatform" not in owners and "mlplatform-handoff" in owners
    # Admission by a real Kueue, which the operator does not undo: e2e/test_kueue.py.


def test_model_deployment_follows_its_training_job(operator, kubectl, custom, namespace, apps_v1, wait_for):
    md = {"model": {"fromTrainingJob": "trainer"}, "runtime": {"preset": "xgboost"}, "replicas": 1}
    kubectl.apply(resource("ModelDeployment", "follower", md), namespace)
    wait_condition(wait_for, custom, "ModelDeployment", namespace, "follower", "Ready", "False", "WaitingForTrainingJob")
    tj = {"image": "python:3.12", "args": ["--v", "1"], "output": {"uri": "s3://models/follow/"}}
    kubectl.apply(resource("TrainingJob", "trainer", tj), namespace)
    body = wait_condition(wait_for, custom, "ModelDeployment", namespace, "follower", "Ready", "True", timeout=90)
    assert body["status"]["modelUri"] == "s3://models/follow/run-1/"
    kubectl.apply(resource("TrainingJob", "trainer", {**tj, "args": ["--v", "2"]}), namespace)

    def rolled_to_run_two():
        env = apps_v1.read_namespaced_deployment("follower", namespace).spec.template.spec.containers[0].env
        return any(e.name == "MODEL_URI" and e.value == "s3://models/follow/run-2/" for e in env)
    wait_for(rolled_to_run_two, timeout=90, what="Deployment rolled to run 2's artifact")
    body = wait_condition(wait_for, custom, "ModelDeployment", namespace, "follower", "Ready", "True", timeout=60)
    assert body["status"]["trainingJobRun"] == 2


def test_training_job_that_failed_stalls_its_model_deployment(operator, kubectl, custom, namespace, wait_for):
    kubectl.apply(resource("TrainingJob", "doomed", {"image": "python:3.12", "output": {"uri": "s3://m/"}},
                           {"mlplatform.dev/kwok-fail": "true"}), namespace)
    md = {"model": {"fromTrainingJob": "doomed"}, "runtime": {"preset": "xgboost"}}
    kubectl.apply(resource("ModelDeployment", "hopeful", md), namespace)
    body = wait_condition(wait_for, custom, "ModelDeployment", namespace, "hopeful", "Stalled", "True",
                          "TrainingJobFailed", timeout=90)
    assert condition(body, "Ready")["reason"] == "TrainingJobFailed"


def test_feature_view_becomes_ready_materialized_and_served(operator, kubectl, custom, namespace, batch_v1,
                                                            apps_v1, wait_for):
    kubectl.apply(resource("FeatureView", "drivers", feature_view_spec()), namespace)
    body = wait_condition(wait_for, custom, "FeatureView", namespace, "drivers", "Ready", "True", timeout=90)
    status = body["status"]
    assert status["servingUrl"] == f"http://drivers-features.{namespace}.svc.cluster.local"
    assert status["lastMaterializedAt"]
    assert condition(body, "Materialized")["status"] == "True" and condition(body, "Fresh")["status"] == "True"
    assert batch_v1.read_namespaced_cron_job("drivers-materialize", namespace).spec.schedule == "0 * * * *"
    assert apps_v1.read_namespaced_deployment("drivers-features", namespace).status.ready_replicas == 1


def test_freshness_turns_false_when_the_budget_runs_out(operator, kubectl, custom, namespace, wait_for):
    spec = feature_view_spec(freshness={"maxStaleness": "15s"}, suspend=True)
    kubectl.apply(resource("FeatureView", "fleeting", spec), namespace)
    wait_condition(wait_for, custom, "FeatureView", namespace, "fleeting", "Fresh", "True", timeout=90)
    body = wait_condition(wait_for, custom, "FeatureView", namespace, "fleeting", "Fresh", "False", "Stale", timeout=40)
    assert body["status"]["phase"] == "Stale" and "suspended" in condition(body, "Fresh")["message"]


def test_features_gate_model_readiness_and_pass_their_urls(operator, kubectl, custom, namespace, apps_v1, wait_for):
    kubectl.apply(resource("ModelDeployment", "scorer", {**CPU_MODEL, "features": ["driver-stats"]}), namespace)
    body = wait_condition(wait_for, custom, "ModelDeployment", namespace, "scorer", "FeaturesReady", "False",
                          "FeatureViewNotFound")
    assert condition(body, "Ready")["status"] == "False"
    env = {e.name: e.value for e in apps_v1.read_namespaced_deployment("scorer", namespace)
           .spec.template.spec.containers[0].env}
    assert env["FEATURES_DRIVER_STATS_URL"] == f"http://driver-stats-features.{namespace}.svc.cluster.local"
    kubectl.apply(resource("FeatureView", "driver-stats", feature_view_spec()), namespace)
    wait_condition(wait_for, custom, "ModelDeployment", namespace, "scorer", "Ready", "True", timeout=90)


def test_bad_manifests_are_refused_by_the_api_server(operator, kubectl, custom, namespace):
    cases = [
        (resource("ModelDeployment", "bad-scale", {**CPU_MODEL, "autoscaling": {
            "minReplicas": 5, "maxReplicas": 2, "targets": {"cpuUtilization": 50}}}),
         "autoscaling.minReplicas must be <= autoscaling.maxReplicas"),
        (resource("ModelDeployment", "bad-model", {**CPU_MODEL, "model": {"uri": "s3://a", "fromTrainingJob": "t"}}),
         "set exactly one of model.uri or model.fromTrainingJob"),
        (resource("ModelDeployment", "bad-uri", {**CPU_MODEL, "model": {"uri": "ftp://x"}}), "spec.model.uri"),
        (resource("ModelDeployment", "bad-cpu", {**CPU_MODEL, "resources": {"cpu": "lots"}}), "spec.resources.cpu"),
        (resource("ModelDeployment", "bad-replicas", {**CPU_MODEL, "replicas": -1}), "spec.replicas"),
        (resource("ModelDeployment", "bad-preset", {**CPU_MODEL, "runtime": {"preset": "tensorrt"}}),
         "spec.runtime.preset"),
        (resource("ModelDeployment", "bad-field", {**CPU_MODEL, "replicaCount": 2}), "replicaCount"),
        (resource("TrainingJob", "bad-workers", {"image": "x", "workers": 0}), "spec.workers"),
        (resource("TrainingJob", "no-image", {"workers": 1}), "spec.image"),
        (resource("TrainingJob", "bad-exit-code", {"image": "x", "failurePolicy": {"nonRetryableExitCodes": [0]}}),
         "spec.failurePolicy.nonRetryableExitCodes[0]"),
        (resource("TrainingJob", "twice-exit-code", {"image": "x", "failurePolicy": {"nonRetryableExitCodes": [2, 2]}}),
         "spec.failurePolicy.nonRetryableExitCodes[1]"),
        (resource("TrainingJob", "bad-restarts", {"image": "x", "failurePolicy": {"maxRestarts": -1}}),
         "spec.failurePolicy.maxRestarts"),
        (resource("FeatureView", "no-entities", feature_view_spec(entities=[])), "spec.entities"),
        (resource("FeatureView", "bad-cron", feature_view_spec(materialization={"schedule": "hourly"})),
         "spec.materialization.schedule"),
        (resource("FeatureView", "bad-ttl", feature_view_spec(ttl="1 day")), "spec.ttl"),
    ]
    for manifest, expected in cases:
        result = kubectl.apply(manifest, namespace, check=False)
        assert result.returncode != 0, f"{manifest['metadata']['name']} was accepted"
        assert expected in result.stderr, result.stderr
    for plural in ("modeldeployments", "trainingjobs", "featureviews"):
        assert custom.list_namespaced_custom_object("mlplatform.dev", "v1alpha1", namespace, plural)["items"] == []


def test_deleting_a_resource_removes_its_children(operator, kubectl, custom, namespace, apps_v1, core_v1, wait_for):
    kubectl.apply(resource("ModelDeployment", "short-lived", CPU_MODEL), namespace)
    wait_condition(wait_for, custom, "ModelDeployment", namespace, "short-lived", "Ready", "True")
    kubectl.run("delete", "modeldeployment/short-lived", "-n", namespace)

    def children_gone():
        return (not apps_v1.list_namespaced_deployment(namespace).items
                and not [s for s in core_v1.list_namespaced_service(namespace).items if s.metadata.name == "short-lived"]
                and not core_v1.list_namespaced_pod(namespace).items)
    wait_for(children_gone, timeout=60, what="children garbage-collected")


def test_distributed_gpu_training_gets_worker_dns_and_gpu_nodes(operator, kubectl, custom, namespace, core_v1,
                                                                 wait_for):
    spec = {"image": "ghcr.io/acme/train:1", "workers": 2,
            "resources": {"cpu": "16", "memory": "64Gi", "gpu": {"count": 8, "type": "nvidia-h100-80gb"}}}
    kubectl.apply(resource("TrainingJob", "dist", spec, {"mlplatform.dev/kwok-complete-after": "120s"}), namespace)
    body = wait_for(lambda: (b := get_cr(custom, "TrainingJob", namespace, "dist")).get("status", {}).get("phase")
                    == "Running" and b, timeout=60, what="distributed run running")
    assert body["status"]["workers"]["active"] == 2
    assert core_v1.read_namespaced_service("dist-workers", namespace).spec.cluster_ip == "None"
    pods = core_v1.list_namespaced_pod(namespace, label_selector="app.kubernetes.io/instance=dist").items
    assert {p.spec.subdomain for p in pods} == {"dist-workers"}
    assert all(core_v1.read_node(p.spec.node_name).metadata.labels["nvidia.com/gpu.product"].startswith("NVIDIA-H100")
               for p in pods)


def test_metrics_count_reconciles_and_phases(operator, kubectl, custom, namespace, wait_for):
    kubectl.apply(resource("ModelDeployment", "measured", CPU_MODEL), namespace)
    wait_condition(wait_for, custom, "ModelDeployment", namespace, "measured", "Ready", "True")
    text = operator.metrics()
    assert 'mlplatform_reconcile_total{kind="ModelDeployment",result="success"}' in text
    assert 'mlplatform_reconcile_duration_seconds_bucket{kind="ModelDeployment",le="0.1"}' in text
    ready = [line for line in text.splitlines()
             if line.startswith('mlplatform_resources{kind="ModelDeployment",phase="Ready"}')]
    assert ready and float(ready[0].split()[-1]) >= 1


def test_turning_on_autoscaling_keeps_the_current_size(operator, kubectl, custom, namespace, apps_v1, wait_for):
    kubectl.apply(resource("ModelDeployment", "grows", {**CPU_MODEL, "replicas": 3}), namespace)
    wait_condition(wait_for, custom, "ModelDeployment", namespace, "grows", "Ready", "True")
    autoscaled = {**CPU_MODEL, "autoscaling": {"minReplicas": 2, "maxReplicas": 5, "targets": {"cpuUtilization": 60}}}
    del autoscaled["replicas"]
    kubectl.apply(resource("ModelDeployment", "grows", autoscaled), namespace)
    wait_for(lambda: get_cr(custom, "ModelDeployment", namespace, "grows")["status"]["observedGeneration"] == 2,
             what="generation 2 reconciled")
    for _ in range(10):  # the size never drops to the API default of 1 on the way
        assert apps_v1.read_namespaced_deployment("grows", namespace).spec.replicas == 3
        time.sleep(0.3)
    deployment = apps_v1.read_namespaced_deployment("grows", namespace)
    owners = {f.manager for f in deployment.metadata.managed_fields if "f:replicas" in str(f.fields_v1)}
    assert "mlplatform" not in owners


def test_scheduled_materializations_advance_last_materialized(operator, kubectl, custom, namespace, wait_for):
    kubectl.apply(resource("FeatureView", "hourly", feature_view_spec()), namespace)
    body = wait_condition(wait_for, custom, "FeatureView", namespace, "hourly", "Ready", "True", timeout=90)
    first = body["status"]["lastMaterializedAt"]
    version = body["metadata"]["resourceVersion"]
    time.sleep(3)  # settled: no status rewrites while nothing changes
    assert get_cr(custom, "FeatureView", namespace, "hourly")["metadata"]["resourceVersion"] == version
    time.sleep(max(0.0, 1.1 - (time.time() % 1)))  # timestamps have second resolution
    kubectl.run("create", "job", "hourly-manual", "--from=cronjob/hourly-materialize", "-n", namespace)
    body = wait_for(lambda: (b := get_cr(custom, "FeatureView", namespace, "hourly"))["status"]
                    ["lastMaterializedAt"] > first and b, timeout=60, what="lastMaterializedAt advanced")
    assert body["status"]["lastMaterializationJob"] == "hourly-manual"


def test_suspend_scales_a_model_to_zero_and_holds_a_run(operator, kubectl, custom, namespace, apps_v1, wait_for):
    kubectl.apply(resource("ModelDeployment", "sleepy", {**CPU_MODEL, "suspend": True}), namespace)
    body = wait_for(lambda: (b := get_cr(custom, "ModelDeployment", namespace, "sleepy")).get("status", {})
                    .get("phase") == "Suspended" and b, what="model suspended")
    assert condition(body, "Ready")["reason"] == "Suspended"
    assert apps_v1.read_namespaced_deployment("sleepy", namespace).spec.replicas == 0
    kubectl.apply(resource("TrainingJob", "held", {"image": "python:3.12", "suspend": True}), namespace)
    wait_for(lambda: get_cr(custom, "TrainingJob", namespace, "held").get("status", {}).get("phase") == "Suspended",
             what="run suspended")
    kubectl.apply(resource("TrainingJob", "held", {"image": "python:3.12", "suspend": False}), namespace)
    body = wait_condition(wait_for, custom, "TrainingJob", namespace, "held", "Ready", "True", "Succeeded", timeout=60)
    assert body["status"]["run"] == 1  # suspend does not start a new run


def test_a_spec_the_operator_cannot_act_on_is_stalled(operator, kubectl, custom, namespace, wait_for):
    spec = {"image": "python:3.12", "resources": {"gpu": {"count": 1, "type": "nvidia-b999"}}}
    kubectl.apply(resource("TrainingJob", "exotic", spec), namespace)
    body = wait_condition(wait_for, custom, "TrainingJob", namespace, "exotic", "Stalled", "True", "InvalidSpec")
    assert "spec.resources.gpu.type: found 'nvidia-b999'" in condition(body, "Ready")["message"]
