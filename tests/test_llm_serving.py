"""Issue 9: LLM-grade serving (shared memory, parallelism, startup probes, model formats, oci://,
multi-node replicas, the model cache), rendering and refusals."""

from __future__ import annotations

import copy

import kubernetes_validate
import pytest

from mlplatform.api.validation import validate_document
from mlplatform.config import OperatorConfig
from mlplatform.render import render_offline

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
