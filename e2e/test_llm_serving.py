"""Issue 9 on the real control plane: CEL refusals of parallelism and nodesPerReplica, the preset
refusals reported by the operator, /dev/shm and the startupProbe on GPU pods of both kinds, and oci://
models as image volumes (Kubernetes 1.36: ImageVolume GA, on by default)."""

from __future__ import annotations

from harness import condition, resource, wait_condition

LLM = {
    "model": {"uri": "hf://meta-llama/Llama-3.1-70B-Instruct", "format": "huggingface"},
    "runtime": {"preset": "vllm", "parallelism": {"tensor": 8}, "startupTimeoutSeconds": 1200},
    "resources": {"cpu": "16", "memory": "128Gi", "gpu": {"count": 8, "type": "nvidia-h100-80gb"}},
    "replicas": 1,
}


def test_api_server_refuses_parallelism_that_does_not_match_the_gpus(crds, kubectl, namespace):
    bad = {**LLM, "runtime": {**LLM["runtime"], "parallelism": {"tensor": 4, "pipeline": 1}}}
    result = kubectl.apply(resource("ModelDeployment", "mismatch", bad), namespace, check=False)
    assert result.returncode != 0
    assert "spec.runtime.parallelism: Invalid value" in result.stderr
    assert "tensor*pipeline must equal resources.gpu.count*nodesPerReplica" in result.stderr
    cpu = {"model": {"uri": "s3://m/x/"}, "runtime": {"preset": "vllm"}, "nodesPerReplica": 2}
    result = kubectl.apply(resource("ModelDeployment", "no-gpu", cpu), namespace, check=False)
    assert result.returncode != 0 and "nodesPerReplica > 1 needs resources.gpu" in result.stderr


def test_gpu_llm_gets_shm_parallelism_and_a_startup_probe_on_h100_nodes(operator, kubectl, custom, namespace,
                                                                         apps_v1, core_v1, wait_for):
    kubectl.apply(resource("ModelDeployment", "llm", LLM), namespace)
    wait_condition(wait_for, custom, "ModelDeployment", namespace, "llm", "Ready", "True", timeout=90)
    pod = core_v1.list_namespaced_pod(namespace, label_selector="app.kubernetes.io/instance=llm").items[0]
    node = core_v1.read_node(pod.spec.node_name)
    assert node.metadata.labels["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3"
    server = pod.spec.containers[0]
    shm = next(v for v in pod.spec.volumes if v.name == "dshm")
    assert shm.empty_dir.medium == "Memory" and shm.empty_dir.size_limit == "16Gi"
    assert server.resources.limits["memory"] == "144Gi" and server.resources.limits["nvidia.com/gpu"] == "8"
    assert "--tensor-parallel-size=8" in server.args
    assert server.startup_probe.http_get.path == "/health" and server.startup_probe.failure_threshold == 120


def test_operator_reports_a_preset_that_refuses_parallelism(operator, kubectl, custom, namespace, wait_for):
    spec = {**LLM, "model": {"uri": "s3://m/x/", "format": "onnx"}, "runtime": {"preset": "triton", "parallelism": {"tensor": 8}}}
    kubectl.apply(resource("ModelDeployment", "triton-tp", spec), namespace)
    body = wait_condition(wait_for, custom, "ModelDeployment", namespace, "triton-tp", "Stalled", "True")
    message = condition(body, "Stalled")["message"]
    assert "spec.runtime.parallelism" in message and "preset 'triton' declares no parallelism arguments" in message


def test_training_workers_on_gpus_get_shared_memory(operator, kubectl, custom, namespace, batch_v1, wait_for):
    spec = {"image": "ghcr.io/acme/train:1", "command": ["python", "train.py"], "workers": 2,
            "resources": {"memory": "32Gi", "sharedMemory": "8Gi", "gpu": {"count": 8, "type": "nvidia-h100-80gb"}}}
    kubectl.apply(resource("TrainingJob", "shm-train", spec), namespace)

    def job():
        jobs = batch_v1.list_namespaced_job(namespace, label_selector="app.kubernetes.io/instance=shm-train").items
        return jobs[0] if jobs else None
    pod = wait_for(job, timeout=60, what="the run's Job").spec.template.spec
    shm = next(v for v in pod.volumes if v.name == "dshm")
    assert shm.empty_dir.size_limit == "8Gi"
    assert pod.containers[0].resources.limits["memory"] == "40Gi"


def test_oci_model_is_an_image_volume_the_api_server_keeps(operator, kubectl, custom, namespace, core_v1, wait_for):
    """1.36 drops a feature-gated field on create when its gate is off; here the image volume survives."""
    spec = {"model": {"uri": "oci://ghcr.io/acme/models/churn:3", "format": "sklearn"},
            "runtime": {"preset": "sklearn"}, "replicas": 1}
    kubectl.apply(resource("ModelDeployment", "from-image", spec), namespace)
    wait_condition(wait_for, custom, "ModelDeployment", namespace, "from-image", "Ready", "True", timeout=90)
    pod = core_v1.list_namespaced_pod(namespace, label_selector="app.kubernetes.io/instance=from-image").items[0]
    model = next(v for v in pod.spec.volumes if v.name == "model")
    assert model.image.reference == "ghcr.io/acme/models/churn:3"
    assert not pod.spec.init_containers
    mount = next(m for m in pod.spec.containers[0].volume_mounts if m.name == "model")
    assert mount.mount_path == "/mnt/models" and mount.read_only
