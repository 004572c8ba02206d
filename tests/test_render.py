"""Rendering rules of API.md, on the examples and on manifests written for these tests."""

from __future__ import annotations

import kubernetes_validate
import pytest
import yaml

from mlplatform.api.validation import validate_document
from mlplatform.config import OperatorConfig
from mlplatform.render import (
    Owner,
    RenderError,
    render_feature_view,
    render_model_deployment,
    render_offline,
    render_training_job,
)

from .conftest import all_example_documents, load_example, set_path
from .gateway_schema import validate_httproute
from .keda_schema import validate_scaled_object

# The examples are rendered as a cluster with Prometheus would (modeldeployment-llm-keda.yaml needs its url).
CONFIG = OperatorConfig(prometheus={"url": "http://prometheus.monitoring.svc:9090"})
K8S_VERSION = "1.36.0"


def example_stores() -> dict:
    """The examples' FeatureStores, as `mlplatform render` of the folder knows them."""
    from mlplatform.api.featurestore import FeatureStoreSpec

    return {(d["metadata"]["namespace"], d["metadata"]["name"]): FeatureStoreSpec.model_validate(d["spec"])
            for _, d in all_example_documents() if d["kind"] == "FeatureStore"}


def rendered_objects(doc: dict, **kwargs) -> list[dict]:
    resource, problems = validate_document(doc)
    assert problems == [], problems
    return render_offline(resource, CONFIG, stores=example_stores(), **kwargs).objects


def by_kind(objects: list[dict], kind: str) -> list[dict]:
    return [o for o in objects if o["kind"] == kind]


def pod_specs(objects: list[dict]) -> list[dict]:
    specs = []
    for obj in objects:
        if "mlplatform.dev/model-cache" in obj["metadata"]["labels"]:
            continue  # a model.cache fill Job: shared, not one resource's (tests/test_llm_serving.py)
        if obj["kind"] in ("Deployment", "Job"):
            specs.append(obj["spec"]["template"]["spec"])
        elif obj["kind"] == "CronJob":
            specs.append(obj["spec"]["jobTemplate"]["spec"]["template"]["spec"])
        elif obj["kind"] == "LeaderWorkerSet":
            template = obj["spec"]["leaderWorkerTemplate"]
            specs += [template["leaderTemplate"]["spec"], template["workerTemplate"]["spec"]]
    return specs


def md(spec: dict, name: str = "scorer") -> dict:
    return {"apiVersion": "mlplatform.dev/v1alpha1", "kind": "ModelDeployment",
            "metadata": {"name": name, "namespace": "team"}, "spec": spec}


def tj(spec: dict, name: str = "trainer") -> dict:
    return {"apiVersion": "mlplatform.dev/v1alpha1", "kind": "TrainingJob",
            "metadata": {"name": name, "namespace": "team"}, "spec": spec}


# Manifests written against API.md that are not among the examples.
UNSEEN = [
    md({"model": {"uri": "pvc://models-claim/fraud/v7", "format": "onnx"}, "runtime": {"preset": "triton"},
        "resources": {"cpu": "2", "memory": "8Gi", "gpu": {"count": 1, "mig": "1g.10gb"}}, "replicas": 3}),
    md({"model": {"uri": "gs://bucket/m/"}, "runtime": {"preset": "mlserver", "protocol": "grpc"},
        "autoscaling": {"minReplicas": 2, "maxReplicas": 5, "targets": {"cpuUtilization": 60, "memoryUtilization": 75}}}),
    md({"model": {"uri": "oci://registry/models/m:1"}, "runtime": {"preset": "custom", "image": "ghcr.io/acme/server:2",
        "command": ["serve"], "args": ["--port", "9000"], "port": 9000, "readinessPath": "/ready"},
        "scheduling": {"nodeSelector": {"pool": "inference"}, "priorityClassName": "high",
                       "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}]},
        "serviceAccountName": "model-reader", "suspend": True}),
    md({"model": {"uri": "s3://m/torch/"}, "runtime": {"preset": "torchserve"},
        "resources": {"gpu": {"count": 2, "type": "nvidia-l4"}}, "replicas": 1}),
    tj({"image": "ghcr.io/acme/jax:1", "workers": 2, "distribution": {"framework": "jax", "port": 1234},
        "resources": {"cpu": 8, "memory": "32Gi", "gpu": {"count": 4, "type": "nvidia-a100-80gb"}}, "suspend": True}),
    tj({"image": "python:3.12", "command": ["python", "-c", "print(1)"], "workers": 3, "distribution": {"framework": "none"}}),
]


def all_cases():
    cases = [(source, doc) for source, doc in all_example_documents()]
    cases += [(f"unseen-{i}-{d['kind']}", d) for i, d in enumerate(UNSEEN)]
    return cases


@pytest.mark.parametrize("source,doc", all_cases(), ids=[s for s, _ in all_cases()])
def test_every_rendered_object_is_valid_kubernetes(source, doc):
    objects = rendered_objects(doc, artifacts={"fraud-train": "s3://models/fraud/run-1/"})
    assert objects
    for obj in objects:
        if obj["kind"] == "LeaderWorkerSet":
            continue  # not a Kubernetes kind: checked against the LWS CRD's schema in test_llm_serving.py
        if obj["kind"] == "HTTPRoute":  # a CRD's kind: checked against the Gateway API's own schema
            validate_httproute(obj)
        elif obj["kind"] == "ScaledObject":  # KEDA's: checked against the CRD schema of the KEDA module
            validate_scaled_object(obj)
        else:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


@pytest.mark.parametrize("source,doc", all_cases(), ids=[s for s, _ in all_cases()])
def test_every_pod_is_restricted_labelled_and_gpu_correct(source, doc):
    objects = rendered_objects(doc, artifacts={"fraud-train": "s3://models/fraud/run-1/",
                                               "churn-model": "s3://models/churn/v3/"})  # a BatchPrediction's source
    name = doc["metadata"]["name"]
    for obj in objects:
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/managed-by"] == "mlplatform"
        if "mlplatform.dev/model-cache" in labels:
            continue  # shared by the users of one model URI: labelled by the cache, not by one resource
        assert labels["app.kubernetes.io/part-of"] == "mlplatform"
        assert labels["app.kubernetes.io/instance"] == name
        assert labels["app.kubernetes.io/name"] == doc["kind"].lower()
        assert labels["app.kubernetes.io/component"]
    gpu = (doc["spec"].get("resources") or {}).get("gpu")
    pods = pod_specs(objects)
    assert pods or doc["kind"] == "FeatureView"
    for pod in pods:
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert not any(k in pod for k in ("hostNetwork", "hostPID", "hostIPC"))
        assert all("hostPath" not in v for v in pod.get("volumes", []))
        for container in pod["containers"] + pod.get("initContainers", []):
            sc = container["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False and sc["runAsNonRoot"] is True
            assert sc["capabilities"] == {"drop": ["ALL"]} and sc["seccompProfile"] == {"type": "RuntimeDefault"}
            assert not sc.get("privileged")
        main = pod["containers"][0]
        limits = main.get("resources", {}).get("limits", {})
        gpu_tolerations = [t for t in pod.get("tolerations", []) if t.get("key") == "nvidia.com/gpu"]
        if gpu and doc["kind"] != "FeatureView":
            resource = f"nvidia.com/mig-{gpu['mig']}" if gpu.get("mig") else "nvidia.com/gpu"
            assert limits[resource] == str(gpu["count"])
            assert gpu_tolerations == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
            if gpu.get("type"):
                assert pod["nodeSelector"]["nvidia.com/gpu.product"] == CONFIG.gpu_types[gpu["type"]]["nvidia.com/gpu.product"]
        else:
            assert not any(k.startswith("nvidia.com/") for k in limits)
            assert gpu_tolerations == []
            assert not any(k.startswith("nvidia.com/") for k in pod.get("nodeSelector", {}))


def _env(container: dict) -> dict:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def test_autoscaled_deployment_leaves_replicas_to_the_hpa():
    objects = rendered_objects(load_example("modeldeployment-gpu-vllm.yaml"))
    deployment, = by_kind(objects, "Deployment")
    hpa, = by_kind(objects, "HorizontalPodAutoscaler")
    assert "replicas" not in deployment["spec"]
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "support-llm"}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 4)
    assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 600
    pods_metrics = {m["pods"]["metric"]["name"]: m["pods"]["target"] for m in hpa["spec"]["metrics"]}
    assert pods_metrics == {CONFIG.metrics.gpu_utilization: {"type": "AverageValue", "averageValue": "80"},
                            CONFIG.metrics.requests_per_second: {"type": "AverageValue", "averageValue": "20"}}
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}


def test_cpu_and_memory_targets_are_resource_metrics():
    objects = rendered_objects(UNSEEN[1])
    hpa, = by_kind(objects, "HorizontalPodAutoscaler")
    assert {m["resource"]["name"]: m["resource"]["target"]["averageUtilization"] for m in hpa["spec"]["metrics"]} == {
        "cpu": 60, "memory": 75}
    service, = by_kind(objects, "Service")
    assert service["spec"]["ports"][0]["name"] == "grpc"
    container = by_kind(objects, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]
    assert container["ports"][0]["containerPort"] == CONFIG.runtimes["mlserver"].grpc_port
    assert container["readinessProbe"] == {"grpc": {"port": 8081}, "periodSeconds": 10, "failureThreshold": 3}


def test_fixed_replicas_and_suspend():
    fixed = by_kind(rendered_objects(UNSEEN[0]), "Deployment")[0]
    assert fixed["spec"]["replicas"] == 3
    suspended = rendered_objects(UNSEEN[2])
    assert by_kind(suspended, "Deployment")[0]["spec"]["replicas"] == 0
    assert by_kind(suspended, "HorizontalPodAutoscaler") == [] and by_kind(suspended, "PodDisruptionBudget") == []
    autoscaled_suspended = set_path(load_example("modeldeployment-gpu-vllm.yaml"), "spec.suspend", True)
    objects = rendered_objects(autoscaled_suspended)
    assert by_kind(objects, "HorizontalPodAutoscaler") == []
    assert by_kind(objects, "Deployment")[0]["spec"]["replicas"] == 0


def test_pvc_model_is_mounted_read_only_without_a_fetcher():
    pod = by_kind(rendered_objects(UNSEEN[0]), "Deployment")[0]["spec"]["template"]["spec"]
    assert "initContainers" not in pod
    assert [v for v in pod["volumes"] if v["name"] == "model"] == [
        {"name": "model", "persistentVolumeClaim": {"claimName": "models-claim", "readOnly": True}}]
    env = _env(pod["containers"][0])
    assert env["MODEL_DIR"] == "/mnt/models/fraud/v7" and env["MODEL_URI"] == "pvc://models-claim/fraud/v7"
    assert pod["containers"][0]["volumeMounts"][0] == {"name": "model", "mountPath": "/mnt/models", "readOnly": True}


def test_object_store_model_is_fetched_by_the_storage_initializer():
    pod = by_kind(rendered_objects(load_example("modeldeployment-sklearn-cpu.yaml")), "Deployment")[0]["spec"]["template"]["spec"]
    init, = pod["initContainers"]
    assert init["image"] == CONFIG.storage_initializer.image
    assert init["args"] == ["s3://models/churn/v3/", "/mnt/models"]
    assert init["envFrom"] == [{"secretRef": {"name": "s3-creds"}}]
    assert pod["volumes"] == [{"name": "model", "emptyDir": {}}]
    server = pod["containers"][0]
    assert server["args"] == ["--model_name=churn-model", "--model_dir=/mnt/models", "--http_port=8080"]
    assert server["readinessProbe"]["httpGet"] == {"path": "/v1/models/churn-model", "port": "http"}


def test_disruption_budget_given_or_defaulted():
    pdb, = by_kind(rendered_objects(load_example("modeldeployment-sklearn-cpu.yaml")), "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"]["app.kubernetes.io/instance"] == "churn-model"
    default_pdb, = by_kind(rendered_objects(UNSEEN[1]), "PodDisruptionBudget")
    assert default_pdb["spec"] == {"selector": default_pdb["spec"]["selector"], "maxUnavailable": 1}
    assert by_kind(rendered_objects(UNSEEN[3]), "PodDisruptionBudget") == []  # one replica: no budget to block drains


def test_from_training_job_waits_for_an_artifact_and_says_so():
    doc = load_example("modeldeployment-from-training.yaml")
    resource, _ = validate_document(doc)
    rendered = render_offline(resource, CONFIG)
    assert [o["kind"] for o in rendered.objects] == ["Service"]
    assert any("fraud-train" in n and "no artifact yet" in n for n in rendered.notes)
    objects = rendered_objects(doc, artifacts={"fraud-train": "s3://models/fraud/run-4/"})
    pod = by_kind(objects, "Deployment")[0]["spec"]["template"]["spec"]
    env = _env(pod["containers"][0])
    assert env["MODEL_URI"] == "s3://models/fraud/run-4/"
    assert env["FEATURES_DRIVER_STATS_URL"] == "http://driver-stats-features.risk.svc.cluster.local"


def test_custom_runtime_and_scheduling():
    objects = rendered_objects(UNSEEN[2])
    pod = by_kind(objects, "Deployment")[0]["spec"]["template"]["spec"]
    server = pod["containers"][0]
    assert (server["image"], server["command"], server["args"]) == ("ghcr.io/acme/server:2", ["serve"], ["--port", "9000"])
    assert server["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    assert pod["nodeSelector"] == {"pool": "inference"} and pod["priorityClassName"] == "high"
    assert pod["tolerations"] == [{"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}]
    assert pod["serviceAccountName"] == "model-reader"


def test_unknown_gpu_type_names_the_field():
    doc = set_path(load_example("modeldeployment-gpu-vllm.yaml"), "spec.resources.gpu.type", "nvidia-b300")
    resource, _ = validate_document(doc)
    with pytest.raises(RenderError) as err:
        render_offline(resource, CONFIG)
    assert err.value.field == "spec.resources.gpu.type" and "nvidia-h100-80gb" in err.value.message


def test_values_cannot_break_out_of_the_templates():
    hostile = 'x"}\n  hostNetwork: true\n- {{ 7*7 }} ${HOME}'
    doc = set_path(load_example("modeldeployment-sklearn-cpu.yaml"), "spec.runtime.env", [{"name": "NOTE", "value": hostile}])
    pod = by_kind(rendered_objects(doc), "Deployment")[0]["spec"]["template"]["spec"]
    assert _env(pod["containers"][0])["NOTE"] == hostile
    assert "hostNetwork" not in pod


def test_distributed_training_job():
    objects = rendered_objects(load_example("trainingjob-distributed-gpu.yaml"))
    job, = by_kind(objects, "Job")
    service, = by_kind(objects, "Service")
    assert job["metadata"]["name"] == "llm-finetune-1"
    spec = job["spec"]
    assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == ("Indexed", 4, 4)
    # A distributed attempt ends at its first failing worker; the operator restarts the whole group (failurePolicy).
    assert spec["backoffLimit"] == 0 and spec["activeDeadlineSeconds"] == 86400 and spec["ttlSecondsAfterFinished"] == 604800
    assert [r["action"] for r in spec["podFailurePolicy"]["rules"]] == ["FailJob", "FailJob"]
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a" and spec["suspend"] is True
    assert service["spec"]["clusterIP"] == "None" and service["metadata"]["name"] == "llm-finetune-workers"
    pod = spec["template"]["spec"]
    assert pod["subdomain"] == "llm-finetune-workers" and pod["restartPolicy"] == "Never"
    env = _env(pod["containers"][0])
    assert env["MASTER_ADDR"] == env["PET_MASTER_ADDR"] == "llm-finetune-1-0.llm-finetune-workers"
    assert (env["MASTER_PORT"], env["WORLD_SIZE"], env["NNODES"], env["LOCAL_WORLD_SIZE"]) == ("29500", "32", "4", "8")
    assert (env["PET_NNODES"], env["PET_NPROC_PER_NODE"]) == ("4", "8")
    index = {"fieldRef": {"fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}}
    assert env["RANK"] == env["NODE_RANK"] == env["PET_NODE_RANK"] == index
    assert env["CHECKPOINT_DIR"] == "/checkpoints" and env["OUTPUT_URI"] == "s3://models/llm-finetune/run-1/"
    assert {"name": "checkpoint", "persistentVolumeClaim": {"claimName": "llm-ckpt"}} in pod["volumes"]


def test_single_worker_training_job_has_no_service_and_reads_features():
    objects = rendered_objects(load_example("trainingjob-cpu.yaml"))
    assert by_kind(objects, "Service") == []
    job, = by_kind(objects, "Job")
    assert job["spec"]["suspend"] is False and "kueue.x-k8s.io/queue-name" not in job["metadata"]["labels"]
    pod = job["spec"]["template"]["spec"]
    env = _env(pod["containers"][0])
    assert env["WORLD_SIZE"] == "1" and env["MASTER_ADDR"] == "localhost"
    assert env["FEATURES_DRIVER_STATS_REPO"] == "/etc/feast/repo/driver-stats"
    assert {"name": "features-driver-stats", "configMap": {"name": "driver-stats-feast-repo"}} in pod["volumes"]


def test_jax_and_plain_distribution_env():
    jax_pod = by_kind(rendered_objects(UNSEEN[4]), "Job")[0]["spec"]["template"]["spec"]
    env = _env(jax_pod["containers"][0])
    assert env["JAX_COORDINATOR_ADDRESS"] == "trainer-1-0.trainer-workers:1234" and env["JAX_NUM_PROCESSES"] == "2"
    assert env["JAX_LOCAL_DEVICE_COUNT"] == "4"  # procsPerWorker defaults to gpu.count
    assert by_kind(rendered_objects(UNSEEN[4]), "Job")[0]["spec"]["suspend"] is True
    plain = _env(by_kind(rendered_objects(UNSEEN[5]), "Job")[0]["spec"]["template"]["spec"]["containers"][0])
    assert plain["NUM_WORKERS"] == "3" and "MASTER_ADDR" not in plain


def test_kueue_owns_suspend_once_the_job_exists():
    resource, _ = validate_document(load_example("trainingjob-distributed-gpu.yaml"))
    owner = Owner("TrainingJob", resource.name, "research", uid="u-1", generation=3)
    created = render_training_job(owner, resource.spec, CONFIG, run=2).objects[0]
    existing = render_training_job(owner, resource.spec, CONFIG, run=2, job_exists=True).objects[0]
    assert created["spec"]["suspend"] is True and "suspend" not in existing["spec"]
    assert created["metadata"]["ownerReferences"] == [{
        "apiVersion": "mlplatform.dev/v1alpha1", "kind": "TrainingJob", "name": "llm-finetune", "uid": "u-1",
        "controller": True, "blockOwnerDeletion": True}]
    assert created["metadata"]["name"] == "llm-finetune-2"


def test_feature_view_children():
    objects = rendered_objects(load_example("featureview-driver-stats.yaml"))
    assert sorted(o["kind"] for o in objects) == ["ConfigMap", "CronJob", "Deployment", "Job", "PodDisruptionBudget", "Service"]
    configmap, = by_kind(objects, "ConfigMap")
    assert set(configmap["data"]) == {"feature_store.yaml", "features.py"}
    assert yaml.safe_load(configmap["data"]["feature_store.yaml"])["online_store"] == CONFIG.feast.online_store
    cron, = by_kind(objects, "CronJob")
    assert cron["spec"]["schedule"] == "*/30 * * * *" and cron["spec"]["suspend"] is False
    job, = by_kind(objects, "Job")
    assert job["metadata"]["name"].startswith("driver-stats-materialize-")
    script = job["spec"]["template"]["spec"]["containers"][0]["command"][-1]
    assert "feast apply" in script and "materialize-incremental" in script
    server, = by_kind(objects, "Deployment")
    assert server["spec"]["replicas"] == 2
    serve = server["spec"]["template"]["spec"]["containers"][0]
    assert "feast" in serve["command"][-1] and "serve" in serve["command"][-1]
    service, = by_kind(objects, "Service")
    assert service["metadata"]["name"] == "driver-stats-features" and service["spec"]["ports"][0]["port"] == 80


def test_feature_view_changes_rename_the_materialization_job_but_not_for_schedule():
    base = load_example("featureview-driver-stats.yaml")
    name_of = lambda doc: by_kind(rendered_objects(doc), "Job")[0]["metadata"]["name"]  # noqa: E731
    assert name_of(set_path(base, "spec.materialization.schedule", "@daily")) == name_of(base)
    assert name_of(set_path(base, "spec.features.0.dtype", "FLOAT64")) != name_of(base)


def test_offline_and_suspended_feature_views():
    offline = set_path(set_path(load_example("featureview-driver-stats.yaml"), "spec.online", False), "spec.serving", None)
    objects = rendered_objects(offline)
    assert sorted(o["kind"] for o in objects) == ["ConfigMap", "Job"]
    assert "materialize" not in by_kind(objects, "Job")[0]["spec"]["template"]["spec"]["containers"][0]["command"][-1]
    suspended = rendered_objects(set_path(load_example("featureview-driver-stats.yaml"), "spec.suspend", True))
    assert by_kind(suspended, "CronJob")[0]["spec"]["suspend"] is True
    resource, _ = validate_document(load_example("featureview-driver-stats.yaml"))
    owner = Owner("FeatureView", "driver-stats", "risk", uid="u")
    kinds = [o["kind"] for o in render_feature_view(owner, resource.spec, CONFIG, include_materialization_job=False).objects]
    assert "Job" not in kinds and "CronJob" in kinds


def test_model_deployment_render_is_deterministic():
    resource, _ = validate_document(load_example("modeldeployment-gpu-vllm.yaml"))
    owner = Owner("ModelDeployment", resource.name, "research", uid="u")
    first = render_model_deployment(owner, resource.spec, CONFIG, "hf://x").objects
    assert first == render_model_deployment(owner, resource.spec, CONFIG, "hf://x").objects


def test_feast_value_type_names_are_accepted_as_dtypes():
    doc = set_path(load_example("featureview-driver-stats.yaml"), "spec.features",
                   [{"name": "speed", "dtype": "DOUBLE"}, {"name": "ratio", "dtype": "FLOAT"}])
    configmap, = by_kind(rendered_objects(doc), "ConfigMap")
    definitions = configmap["data"]["features.py"]
    assert "Field(name='speed', dtype=Float64" in definitions
    assert "Field(name='ratio', dtype=Float32" in definitions


def test_a_small_model_reserves_what_it_asks_not_the_storage_initializer_s_memory():
    """The scheduler reserves max(largest init container, sum of app containers) per pod: with the storage
    initializer's small request (operator configuration; KServe's 100Mi, limit 1Gi) a 128Mi model reserves 128Mi."""
    from mlplatform.render.shm import quantity_value as parse_quantity

    objects = rendered_objects(md({"model": {"uri": "s3://models/churn/v3/", "format": "sklearn"},
                                   "runtime": {"preset": "sklearn"}, "resources": {"cpu": "100m", "memory": "128Mi"}}))
    pod = pod_specs(objects)[0]
    init = max(parse_quantity(c["resources"]["requests"]["memory"]) for c in pod["initContainers"])
    app = sum(parse_quantity(c["resources"]["requests"]["memory"]) for c in pod["containers"])
    assert max(init, app) == 128 * 2**20
    fetcher, = pod["initContainers"]
    assert fetcher["resources"]["requests"]["memory"] == CONFIG.storage_initializer.memory == "100Mi"
    assert fetcher["resources"]["limits"]["memory"] == CONFIG.storage_initializer.memory_limit == "1Gi"


def test_the_model_cache_fill_job_requests_the_configured_small_memory():
    objects = rendered_objects(md({"model": {"uri": "s3://models/churn/v3/", "format": "sklearn", "cache": {"size": "1Gi"}},
                                   "runtime": {"preset": "sklearn"}}))
    job, = by_kind(objects, "Job")
    fetcher, = job["spec"]["template"]["spec"]["containers"]
    assert fetcher["resources"] == {"requests": {"cpu": "100m", "memory": "100Mi"}, "limits": {"memory": "1Gi"}}
