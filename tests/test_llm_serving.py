"""Issue 9: LLM-grade serving (shared memory, parallelism, startup probes, model formats, oci://,
multi-node replicas, the model cache), rendering and refusals."""

from __future__ import annotations

import copy

import kubernetes_validate
import pytest
import yaml

from mlplatform.api.validation import validate_document
from mlplatform.config import OperatorConfig
from mlplatform.render import RenderError, render_offline

from .test_render import K8S_VERSION, md, tj

CONFIG = OperatorConfig()


def render(doc: dict, config: OperatorConfig = CONFIG, **kwargs) -> list[dict]:
    resource, problems = validate_document(doc)
    assert problems == [], problems
    objects = render_offline(resource, config, **kwargs).objects
    for obj in objects:
        if obj["apiVersion"].startswith(("apps/", "v1", "batch/", "autoscaling/", "policy/")):
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    return objects


def problems_of(doc: dict) -> list[str]:
    return [str(p) for p in validate_document(doc)[1]]


def pod_of(objects: list[dict], kind: str = "Deployment") -> dict:
    obj = next(o for o in objects if o["kind"] == kind)
    return obj["spec"]["template"]["spec"]


def volume(pod: dict, name: str) -> dict | None:
    return next((v for v in pod.get("volumes", []) if v["name"] == name), None)


GPU_MD = {"model": {"uri": "hf://meta-llama/Llama-3.1-8B-Instruct", "format": "huggingface"},
          "runtime": {"preset": "vllm"}, "resources": {"cpu": "8", "memory": "64Gi", "gpu": {"count": 1, "type": "nvidia-l4"}}}
GPU_TJ = {"image": "ghcr.io/acme/train:1", "workers": 2,
          "resources": {"memory": "32Gi", "gpu": {"count": 8, "type": "nvidia-h100-80gb"}}}


# --- resources.sharedMemory ----------------------------------------------------------------------


@pytest.mark.parametrize("make,spec,kind,container", [
    (md, GPU_MD, "Deployment", "server"), (tj, GPU_TJ, "Job", "trainer")])
def test_gpu_pods_get_the_configured_shared_memory_counted_in_memory(make, spec, kind, container):
    pod = pod_of(render(make(spec)), kind)
    assert volume(pod, "dshm") == {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "16Gi"}}
    main = next(c for c in pod["containers"] if c["name"] == container)
    assert {"name": "dshm", "mountPath": "/dev/shm"} in main["volumeMounts"]
    memory = spec["resources"]["memory"]
    expected = {"64Gi": "80Gi", "32Gi": "48Gi"}[memory]
    assert main["resources"]["limits"]["memory"] == main["resources"]["requests"]["memory"] == expected


@pytest.mark.parametrize("make,spec,kind", [(md, GPU_MD, "Deployment"), (tj, GPU_TJ, "Job")])
def test_explicit_shared_memory_and_zero_turns_it_off(make, spec, kind):
    explicit = copy.deepcopy(spec)
    explicit["resources"]["sharedMemory"] = "2Gi"
    pod = pod_of(render(make(explicit)), kind)
    assert volume(pod, "dshm")["emptyDir"]["sizeLimit"] == "2Gi"
    off = copy.deepcopy(spec)
    off["resources"]["sharedMemory"] = "0"
    pod = pod_of(render(make(off)), kind)
    assert volume(pod, "dshm") is None
    assert pod["containers"][0]["resources"]["limits"]["memory"] == spec["resources"]["memory"]


def test_cpu_pods_get_no_shared_memory_unless_set_and_request_it_without_a_memory_limit():
    cpu = {"model": {"uri": "s3://m/sk/"}, "runtime": {"preset": "sklearn"}}
    assert volume(pod_of(render(md(cpu))), "dshm") is None
    cpu["resources"] = {"sharedMemory": "1Gi"}
    pod = pod_of(render(md(cpu)))
    assert volume(pod, "dshm")["emptyDir"]["sizeLimit"] == "1Gi"
    assert pod["containers"][0]["resources"] == {"requests": {"memory": "1Gi"}}


def test_operator_config_default_shared_memory_applies_and_can_be_off():
    config = OperatorConfig.model_validate({"defaults": {"gpuSharedMemory": "32Gi"}})
    assert volume(pod_of(render(md(GPU_MD), config)), "dshm")["emptyDir"]["sizeLimit"] == "32Gi"
    config = OperatorConfig.model_validate({"defaults": {"gpuSharedMemory": "0"}})
    assert volume(pod_of(render(md(GPU_MD), config)), "dshm") is None


def test_shared_memory_must_be_a_quantity():
    bad = copy.deepcopy(GPU_MD)
    bad["resources"]["sharedMemory"] = "lots"
    assert problems_of(md(bad)) == [
        "spec.resources.sharedMemory: found 'lots'; allowed: a Kubernetes quantity such as 500m, 4, 16Gi"]


# --- runtime.parallelism -------------------------------------------------------------------------

TP8 = {"model": {"uri": "hf://meta-llama/Llama-3.1-70B-Instruct", "format": "huggingface"},
       "runtime": {"preset": "vllm", "parallelism": {"tensor": 8}},
       "resources": {"gpu": {"count": 8, "type": "nvidia-h100-80gb"}}}


def test_vllm_parallelism_becomes_server_arguments():
    server = pod_of(render(md(TP8)))["containers"][0]
    assert server["args"][-2:] == ["--tensor-parallel-size=8", "--pipeline-parallel-size=1"]
    spec = copy.deepcopy(TP8)
    spec["runtime"]["parallelism"] = {"tensor": 4, "pipeline": 2}
    server = pod_of(render(md(spec)))["containers"][0]
    assert server["args"] == ["--model=/mnt/models", "--served-model-name=scorer", "--port=8000",
                              "--tensor-parallel-size=4", "--pipeline-parallel-size=2"]


@pytest.mark.parametrize("preset", ["vllm", "triton", "torchserve", "sklearn", "xgboost", "mlserver"])
def test_every_preset_without_parallelism_gets_no_parallelism_arguments(preset):
    spec = {"model": {"uri": "s3://m/x/"}, "runtime": {"preset": preset}}
    args = pod_of(render(md(spec)))["containers"][0].get("args", [])
    assert not any("parallel" in a for a in args)


@pytest.mark.parametrize("preset", ["triton", "torchserve", "sklearn", "xgboost", "mlserver"])
def test_presets_without_a_mapping_refuse_parallelism(preset):
    spec = copy.deepcopy(TP8)
    spec["runtime"]["preset"] = preset
    del spec["model"]["format"]
    resource, problems = validate_document(md(spec))
    assert problems == []
    with pytest.raises(RenderError) as err:
        render_offline(resource, CONFIG)
    assert err.value.field == "spec.runtime.parallelism"
    assert f"preset {preset!r} declares no parallelism arguments" in err.value.message
    assert "presets that take runtime.parallelism: vllm" in err.value.message


def test_a_configured_mapping_enables_parallelism_for_a_preset():
    config = OperatorConfig()
    config.runtimes["triton"].parallelism_args = ["--tp={tensor}"]
    spec = copy.deepcopy(TP8)
    spec["runtime"]["preset"] = "triton"
    del spec["model"]["format"]
    assert "--tp=8" in pod_of(render(md(spec), config))["containers"][0]["args"]


@pytest.mark.parametrize("parallelism,gpu,nodes,ok", [
    ({"tensor": 8}, 8, None, True), ({"tensor": 8, "pipeline": 2}, 8, 2, True), ({"pipeline": 2}, 2, None, True),
    ({"tensor": 4}, 8, None, False), ({"tensor": 8, "pipeline": 2}, 8, None, False), ({"tensor": 8}, None, None, False)])
def test_parallelism_must_use_exactly_the_gpus_of_a_replica(parallelism, gpu, nodes, ok):
    spec = copy.deepcopy(TP8)
    spec["runtime"]["parallelism"] = parallelism
    if gpu is None:
        del spec["resources"]
    else:
        spec["resources"]["gpu"]["count"] = gpu
    if nodes:
        spec["nodesPerReplica"] = nodes
    problems = problems_of(md(spec))
    assert problems == ([] if ok else [
        "spec.runtime.parallelism: runtime.parallelism: tensor*pipeline must equal resources.gpu.count*nodesPerReplica "
        "(the GPUs of one replica), and resources.gpu must be set"])


def test_multi_node_needs_gpus():
    assert problems_of(md({"model": {"uri": "s3://m/x/"}, "runtime": {"preset": "vllm"}, "nodesPerReplica": 2})) == [
        "spec.nodesPerReplica: nodesPerReplica > 1 needs resources.gpu (each pod of a replica is one GPU node's worth)"]


# --- runtime.startupTimeoutSeconds ---------------------------------------------------------------


@pytest.mark.parametrize("preset,seconds", [("vllm", 1800), ("triton", 1800), ("torchserve", 600), ("sklearn", 300),
                                            ("xgboost", 300), ("mlserver", 600)])
def test_presets_give_a_startup_probe_on_the_readiness_endpoint(preset, seconds):
    server = pod_of(render(md({"model": {"uri": "s3://m/x/"}, "runtime": {"preset": preset}})))["containers"][0]
    startup, readiness = server["startupProbe"], server["readinessProbe"]
    assert startup["httpGet"] == readiness["httpGet"]
    assert startup["periodSeconds"] * startup["failureThreshold"] == seconds


def test_startup_timeout_from_the_spec_wins_and_custom_has_none_unless_set():
    spec = copy.deepcopy(TP8)
    spec["runtime"]["startupTimeoutSeconds"] = 3600
    startup = pod_of(render(md(spec)))["containers"][0]["startupProbe"]
    assert startup == {"httpGet": {"path": "/health", "port": "http"}, "periodSeconds": 10, "failureThreshold": 360}
    custom = {"model": {"uri": "s3://m/x/"}, "runtime": {"preset": "custom", "image": "ghcr.io/a/s:1", "port": 9000}}
    assert "startupProbe" not in pod_of(render(md(custom)))["containers"][0]
    custom["runtime"]["startupTimeoutSeconds"] = 95
    startup = pod_of(render(md(custom)))["containers"][0]["startupProbe"]
    assert startup == {"tcpSocket": {"port": "http"}, "periodSeconds": 10, "failureThreshold": 10}


def test_grpc_servers_get_a_grpc_startup_probe():
    spec = {"model": {"uri": "s3://m/x/"}, "runtime": {"preset": "mlserver", "protocol": "grpc"}}
    server = pod_of(render(md(spec)))["containers"][0]
    assert server["startupProbe"]["grpc"] == {"port": 8081}


# --- model.format --------------------------------------------------------------------------------


@pytest.mark.parametrize("preset,fmt,ok", [("vllm", "huggingface", True), ("vllm", "sklearn", False),
                                           ("sklearn", "sklearn", True), ("sklearn", "xgboost", False),
                                           ("triton", "onnx", True), ("torchserve", "onnx", False),
                                           ("custom", "sklearn", True)])
def test_model_format_must_be_one_the_preset_serves(preset, fmt, ok):
    runtime = {"preset": preset, **({"image": "ghcr.io/a/s:1"} if preset == "custom" else {})}
    resource, problems = validate_document(md({"model": {"uri": "s3://m/x/", "format": fmt}, "runtime": runtime}))
    assert problems == []
    if ok:
        render_offline(resource, CONFIG)
        return
    with pytest.raises(RenderError) as err:
        render_offline(resource, CONFIG)
    assert err.value.field == "spec.model.format"
    assert err.value.message == (f"found {fmt!r}; preset {preset!r} serves: "
                                 f"{', '.join(CONFIG.runtimes[preset].formats)} (operator configuration)")


def test_cli_validate_reports_preset_refusals(tmp_path, capsys):
    from mlplatform.cli import main
    bad = md({"model": {"uri": "s3://m/x/", "format": "sklearn"}, "runtime": {"preset": "vllm"}})
    path = tmp_path / "md.yaml"
    path.write_text(yaml.safe_dump(bad))
    assert main(["validate", "-f", str(path)]) == 1
    err = capsys.readouterr().err
    assert "ModelDeployment/scorer: spec.model.format: found 'sklearn'; preset 'vllm' serves: huggingface" in err
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"runtimes": {"vllm": {"image": "vllm/vllm-openai:v0.11.0", "formats": ["sklearn"]}}}))
    assert main(["validate", "--config", str(config), "-f", str(path)]) == 0


# --- oci:// --------------------------------------------------------------------------------------


def test_oci_models_are_an_image_volume_mounted_read_only_without_a_fetcher():
    spec = {"model": {"uri": "oci://ghcr.io/acme/models/llama:3.1", "format": "huggingface"}, "runtime": {"preset": "vllm"}}
    pod = pod_of(render(md(spec)))
    assert "initContainers" not in pod
    assert volume(pod, "model") == {"name": "model", "image": {"reference": "ghcr.io/acme/models/llama:3.1",
                                                              "pullPolicy": "IfNotPresent"}}
    assert {"name": "model", "mountPath": "/mnt/models", "readOnly": True} in pod["containers"][0]["volumeMounts"]


# --- nodesPerReplica > 1: LeaderWorkerSet ---------------------------------------------------------

MULTI = {"model": {"uri": "s3://models/llama-405b/", "format": "huggingface"},
         "runtime": {"preset": "vllm", "parallelism": {"tensor": 8, "pipeline": 2}, "startupTimeoutSeconds": 3600},
         "nodesPerReplica": 2, "replicas": 2,
         "resources": {"cpu": "64", "memory": "1000Gi", "gpu": {"count": 8, "type": "nvidia-h100-80gb"}}}


@pytest.fixture(scope="module")
def lws_schema() -> dict:
    """The LeaderWorkerSet CRD's OpenAPI schema, from the pinned sigs.k8s.io/lws module (e2e/controlplane/lws.py)."""
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e" / "controlplane"))
    import lws
    crd = lws.crd_manifest()
    version, = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    return version["schema"]["openAPIV3Schema"]


def unknown_fields(obj, schema: dict, path: str = "") -> list[str]:
    """Fields the API server would prune silently (a structural schema drops what it does not declare)."""
    out = []
    if isinstance(obj, dict) and "properties" in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
        for key, value in obj.items():
            if key not in schema["properties"]:
                out.append(f"{path}.{key}")
            else:
                out += unknown_fields(value, schema["properties"][key], f"{path}.{key}")
    elif isinstance(obj, list) and "items" in schema:
        for i, item in enumerate(obj):
            out += unknown_fields(item, schema["items"], f"{path}[{i}]")
    return out


def validate_lws(obj: dict, schema: dict) -> None:
    import jsonschema
    jsonschema.validate(obj, schema)
    assert unknown_fields(obj, schema) == []
    for role in ("leaderTemplate", "workerTemplate"):
        template = obj["spec"]["leaderWorkerTemplate"][role]
        kubernetes_validate.validate({"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "t"},
                                      "template": template}, K8S_VERSION, strict=True)


def test_multi_node_replicas_are_one_leader_worker_set(lws_schema):
    objects = render(md(MULTI))
    assert not [o for o in objects if o["kind"] == "Deployment"]
    lws, = [o for o in objects if o["kind"] == "LeaderWorkerSet"]
    validate_lws(lws, lws_schema)
    assert lws["apiVersion"] == "leaderworkerset.x-k8s.io/v1"
    spec = lws["spec"]
    assert spec["replicas"] == 2
    template = spec["leaderWorkerTemplate"]
    assert template["size"] == 2 and template["restartPolicy"] == "RecreateGroupOnPodRestart"
    leader, worker = template["leaderTemplate"]["spec"], template["workerTemplate"]["spec"]
    for pod in (leader, worker):
        main = pod["containers"][0]
        assert main["resources"]["limits"]["nvidia.com/gpu"] == "8"
        assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
        assert volume(pod, "dshm")["emptyDir"]["sizeLimit"] == "16Gi"
        assert "args" not in main
    lead, work = leader["containers"][0], worker["containers"][0]
    assert lead["command"][:2] == ["/bin/sh", "-c"]
    assert lead["command"][2].startswith("ray start --head --port=6379 && exec python3 -m vllm.entrypoints.openai.api_server ")
    assert "--tensor-parallel-size=8 --pipeline-parallel-size=2 --distributed-executor-backend=ray" in lead["command"][2]
    assert work["command"] == ["/bin/sh", "-c", "exec ray start --address=$(LWS_LEADER_ADDRESS):6379 --block"]
    assert lead["startupProbe"]["failureThreshold"] == 360 and "readinessProbe" in lead
    assert not any(k in work for k in ("readinessProbe", "startupProbe", "ports"))
    service, = [o for o in objects if o["kind"] == "Service"]
    assert service["spec"]["selector"]["leaderworkerset.sigs.k8s.io/worker-index"] == "0"


def test_multi_node_hpa_scales_the_leader_worker_set(lws_schema):
    spec = {**MULTI, "autoscaling": {"minReplicas": 1, "maxReplicas": 3, "targets": {"requestsPerSecond": 5}}}
    del spec["replicas"]
    objects = render(md(spec))
    lws, = [o for o in objects if o["kind"] == "LeaderWorkerSet"]
    validate_lws(lws, lws_schema)
    assert "replicas" not in lws["spec"]  # the HPA owns it
    hpa, = [o for o in objects if o["kind"] == "HorizontalPodAutoscaler"]
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "leaderworkerset.x-k8s.io/v1", "kind": "LeaderWorkerSet",
                                             "name": "scorer"}


def test_the_multi_node_example_renders_a_valid_leader_worker_set(lws_schema):
    from .conftest import load_example
    lws, = [o for o in render(load_example("modeldeployment-llm-multinode.yaml")) if o["kind"] == "LeaderWorkerSet"]
    validate_lws(lws, lws_schema)


@pytest.mark.parametrize("preset", ["triton", "torchserve", "sklearn", "xgboost", "mlserver"])
def test_presets_without_multi_node_refuse_it(preset):
    spec = {"model": {"uri": "s3://m/x/"}, "runtime": {"preset": preset}, "nodesPerReplica": 2,
            "resources": {"gpu": {"count": 8}}}
    resource, problems = validate_document(md(spec))
    assert problems == []
    with pytest.raises(RenderError) as err:
        render_offline(resource, CONFIG)
    assert err.value.field == "spec.nodesPerReplica"
    assert err.value.message == (f"found 2; preset {preset!r} declares no multi-node commands in the operator "
                                 f"configuration (allowed: 1); presets that serve across nodes: vllm")


def test_ready_counts_whole_groups():
    from mlplatform.render.leaderworkerset import as_rollout_view
    lws = {"metadata": {"name": "m", "generation": 3},
           "status": {"replicas": 2, "readyReplicas": 1, "updatedReplicas": 2,
                      "conditions": [{"type": "Available", "status": "False", "observedGeneration": 3}]}}
    view = as_rollout_view(lws)
    assert view["status"] == {"replicas": 2, "readyReplicas": 1, "updatedReplicas": 2, "observedGeneration": 3}
    assert as_rollout_view(None) is None
    del lws["status"]["conditions"][0]["observedGeneration"]  # as LWS v0.8 reports them
    assert as_rollout_view(lws)["status"]["observedGeneration"] == 3


def lws_pod(name: str, group: int, worker: int, ready: bool, phase: str = "Running") -> dict:
    from mlplatform.render.common import Owner, labels
    pod_labels = {**labels(Owner("ModelDeployment", "llm", "team"), "predictor"),
                  "leaderworkerset.sigs.k8s.io/name": "llm",
                  "leaderworkerset.sigs.k8s.io/group-index": str(group),
                  "leaderworkerset.sigs.k8s.io/worker-index": str(worker)}
    conditions = [{"type": "Ready", "status": "True" if ready else "False"}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "team", "labels": pod_labels},
            "spec": {"containers": [{"name": "server", "image": "x"}]},
            "status": {"phase": phase, "conditions": conditions}}


def test_group_readiness_counts_a_group_only_when_every_pod_is_ready():
    from mlplatform.status.modeldeployment import group_readiness
    pods = [lws_pod("llm-0", 0, 0, True), lws_pod("llm-0-1", 0, 1, True),
            lws_pod("llm-1", 1, 0, True), lws_pod("llm-1-1", 1, 1, False, phase="Pending")]
    result = group_readiness(pods, size=2, replicas=2)
    assert result.ready == 1
    assert result.missing == "group 1 not Ready: worker pod llm-1-1 is Pending, not Ready"
    assert group_readiness(pods[:3], 2, 2).missing == "group 1 not Ready: 1 of its 2 pods exist"
    assert group_readiness(pods[:2], 2, 1).ready == 1 and group_readiness(pods[:2], 2, 1).missing is None


def test_multi_node_ready_comes_from_the_pods_whatever_the_leader_worker_set_reports():
    """LWS v0.8 counts a group Ready before its workers are: with group 1's worker Pending, the ModelDeployment
    is not Ready and its message names the group."""
    from .test_reconcilers import Harness, model_deployment

    h = Harness()
    body = model_deployment("llm", **{k: v for k, v in MULTI.items()})
    h.add(body)
    h.reconcile(body)
    lws = h.kube.stored("leaderworkerset.x-k8s.io/v1", "LeaderWorkerSet", "team", "llm")
    lws["status"] = {"replicas": 2, "readyReplicas": 2, "updatedReplicas": 2,
                     "conditions": [{"type": "Available", "status": "True",
                                     "observedGeneration": lws["metadata"]["generation"]}]}
    h.add(lws)
    pods = [lws_pod("llm-0", 0, 0, True), lws_pod("llm-0-1", 0, 1, True),
            lws_pod("llm-1", 1, 0, True), lws_pod("llm-1-1", 1, 1, False, phase="Pending")]
    for pod in pods:
        h.add(pod)
    h.ctx.status_written_at.clear()  # past the progress-write interval
    h.reconcile(h.ctx.cache.resource(("ModelDeployment", "team", "llm")))
    status = h.kube.stored("mlplatform.dev/v1alpha1", "ModelDeployment", "team", "llm")["status"]
    ready = {c["type"]: c for c in status["conditions"]}["Ready"]
    assert ready["status"] == "False" and status["replicaSummary"] == "1/2"
    assert "group 1 not Ready: worker pod llm-1-1 is Pending" in ready["message"]
    h.add({**pods[3], "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}})
    h.reconcile(h.ctx.cache.resource(("ModelDeployment", "team", "llm")))
    status = h.kube.stored("mlplatform.dev/v1alpha1", "ModelDeployment", "team", "llm")["status"]
    assert {c["type"]: c["status"] for c in status["conditions"]}["Ready"] == "True"


@pytest.mark.parametrize("budget,replicas,max_unavailable", [
    (None, 2, 1),
    ({"maxUnavailable": 1}, 4, 1),
    ({"maxUnavailable": 2}, 4, 2),
    ({"minAvailable": 1}, 2, 1),        # 1 of 2 groups up: 1 pod may be evicted (it takes its group down)
    ({"minAvailable": 3}, 4, 1),
    ({"minAvailable": "50%"}, 4, 2),
    ({"maxUnavailable": "25%"}, 4, 1),
])
def test_the_multi_node_disruption_budget_counts_whole_groups(budget, replicas, max_unavailable):
    spec = {**MULTI, "replicas": replicas}
    if budget:
        spec["disruptionBudget"] = budget
    pdb, = [o for o in render(md(spec)) if o["kind"] == "PodDisruptionBudget"]
    assert pdb["spec"] == {"maxUnavailable": max_unavailable, "selector": pdb["spec"]["selector"]}
    assert "leaderworkerset.sigs.k8s.io/worker-index" not in pdb["spec"]["selector"]["matchLabels"]


# --- model.cache ---------------------------------------------------------------------------------

CACHED = {"model": {"uri": "s3://models/llama-70b/", "format": "huggingface", "cache": {"size": "200Gi",
                                                                                     "storageClassName": "shared-rwx"}},
          "runtime": {"preset": "vllm"}, "resources": {"gpu": {"count": 8}}, "replicas": 4}


def test_cache_claim_is_named_by_the_uri_and_shared_by_deployments_of_it():
    from mlplatform.render.model_cache import cache_claim_name
    a = render(md(CACHED, name="a"))
    b = render(md(CACHED, name="b"))
    claims = [[o for o in objs if o["kind"] == "PersistentVolumeClaim"] for objs in (a, b)]
    assert claims[0][0]["metadata"]["name"] == claims[1][0]["metadata"]["name"] == cache_claim_name("s3://models/llama-70b/")
    assert cache_claim_name("s3://models/llama-70b/").startswith("model-cache-") and len(cache_claim_name("x")) == 24
    assert cache_claim_name("s3://models/llama-70b/") != cache_claim_name("s3://models/llama-8b/")
    claim = claims[0][0]
    kubernetes_validate.validate(claim, K8S_VERSION, strict=True)
    assert claim["spec"] == {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "200Gi"}},
                             "storageClassName": "shared-rwx"}
    assert "app.kubernetes.io/instance" not in claim["metadata"]["labels"]  # shared: belongs to no single resource


def test_cached_replicas_mount_the_claim_read_only_and_download_nothing_the_fill_job_does():
    from mlplatform.render.model_cache import cache_claim_name
    objects = render(md(CACHED))
    claim = cache_claim_name("s3://models/llama-70b/")
    pod = pod_of(objects)
    assert "initContainers" not in pod
    assert volume(pod, "model") == {"name": "model", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}}
    job, = [o for o in objects if o["kind"] == "Job"]
    kubernetes_validate.validate(job, K8S_VERSION, strict=True)
    assert job["metadata"]["name"] == f"{claim}-fill"
    fill = job["spec"]["template"]["spec"]
    assert fill["containers"][0]["args"] == ["s3://models/llama-70b/", "/mnt/models"]
    assert fill["volumes"] == [{"name": "model-cache", "persistentVolumeClaim": {"claimName": claim}}]


def test_cache_owner_references_are_not_controllers_so_the_last_user_takes_it_away():
    from mlplatform.render import Owner, render_model_deployment
    resource, _ = validate_document(md(CACHED))
    owner = Owner("ModelDeployment", "scorer", "team", uid="u-1")
    objects = render_model_deployment(owner, resource.spec, CONFIG, "s3://models/llama-70b/").objects
    for obj in objects:
        if obj["kind"] in ("PersistentVolumeClaim", "Job"):
            assert obj["metadata"]["ownerReferences"] == [{
                "apiVersion": "mlplatform.dev/v1alpha1", "kind": "ModelDeployment", "name": "scorer", "uid": "u-1",
                "controller": False, "blockOwnerDeletion": False}]


def test_a_training_job_model_gets_a_cache_per_run():
    spec = {**CACHED, "model": {"fromTrainingJob": "trainer", "cache": {"size": "10Gi"}}}
    names = set()
    for run in (1, 2):
        objects = render(md(spec), artifacts={"trainer": f"s3://models/trainer/run-{run}/"})
        names |= {o["metadata"]["name"] for o in objects if o["kind"] == "PersistentVolumeClaim"}
    assert len(names) == 2


@pytest.mark.parametrize("uri", ["pvc://models/x", "oci://ghcr.io/a/m:1"])
def test_cache_is_refused_for_models_that_are_mounted_as_they_are(uri):
    spec = {**CACHED, "model": {"uri": uri, "cache": {"size": "1Gi"}}}
    assert problems_of(md(spec)) == [
        "spec.model.cache: model.cache is for downloaded models: a pvc:// or oci:// model is mounted as it is"]


def test_model_cached_condition_follows_the_claim_and_the_fill_job():
    from mlplatform.controllers.model_cache import fill_condition
    claim = {"metadata": {"name": "model-cache-abc"}, "status": {"phase": "Pending"}}
    job = {"metadata": {"name": "model-cache-abc-fill"}, "status": {}}
    assert fill_condition(claim, job).reason == "ClaimPending"
    claim["status"]["phase"] = "Bound"
    assert (fill_condition(claim, job).status, fill_condition(claim, job).reason) == (False, "Filling")
    job["status"]["conditions"] = [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                                    "message": "Job has reached the specified backoff limit"}]
    cond = fill_condition(claim, job)
    assert (cond.status, cond.reason) == (False, "FillFailed") and "BackoffLimitExceeded" in cond.message
    job["status"]["conditions"] = [{"type": "Complete", "status": "True"}]
    assert (fill_condition(claim, job).status, fill_condition(claim, job).reason) == (True, "Filled")


def test_ready_waits_for_the_cache_and_a_failed_fill_stalls():
    from mlplatform.status.conditions import Cond
    from mlplatform.status.dependencies import ModelResolution
    from mlplatform.status.modeldeployment import ModelDeploymentObserved, model_deployment_report
    resolution = ModelResolution("s3://m/", None, Cond("ModelResolved", True, "ModelUri", "s3://m/"), False)
    base = dict(suspended=False, fixed_replicas=1, resolution=resolution,
                features=Cond("FeaturesReady", True, "NoFeatures", ""), deployment=None, hpa=None)
    filling = model_deployment_report(ModelDeploymentObserved(**base, cache=Cond("ModelCached", False, "Filling", "m")))
    ready = next(c for c in filling.conditions if c.type == "Ready")
    assert (filling.phase, ready.status, ready.reason) == ("Progressing", False, "Filling")
    assert any(c.type == "ModelCached" for c in filling.conditions)
    assert (filling.ready_replicas, filling.replicas, filling.desired_replicas) == (0, 0, 1)
    failed = model_deployment_report(ModelDeploymentObserved(**base, cache=Cond("ModelCached", False, "FillFailed", "m")))
    assert failed.phase == "Stalled"
