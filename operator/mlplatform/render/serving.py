"""What a runtime preset declares for LLM-grade serving, applied to one ModelDeployment spec:
which model formats it serves, how runtime.parallelism becomes server arguments, the startupProbe
budget, and how the model reaches the pod (download, claim, or image volume).

Every refusal names the spec field and what the operator configuration allows; `mlplatform validate`
(with --config) and the operator report the same words.
"""

from __future__ import annotations

import math
from typing import Any

from ..api.modeldeployment import ModelDeploymentSpec
from ..config import OperatorConfig, RuntimePresetConfig
from .common import CONTAINER_SECURITY_CONTEXT, env_from_list

MODEL_DIR = "/mnt/models"
MODEL_VOLUME = "model"
STARTUP_PERIOD_SECONDS = 10


def _presets_with(config: OperatorConfig, attribute: str) -> str:
    names = sorted(n for n, p in config.runtimes.items() if getattr(p, attribute))
    return ", ".join(names) if names else "none"


def preset_problems(spec: ModelDeploymentSpec, preset: RuntimePresetConfig, config: OperatorConfig) -> list[tuple[str, str]]:
    """(field, message) for each thing the spec asks that this preset (as configured) cannot do."""
    name = spec.runtime.preset
    out: list[tuple[str, str]] = []
    fmt = spec.model.format
    if fmt and preset.formats is not None and fmt not in preset.formats:
        out.append(("spec.model.format",
                    f"found {fmt!r}; preset {name!r} serves: {', '.join(preset.formats)} (operator configuration)"))
    if spec.runtime.parallelism is not None and not preset.parallelism_args:
        out.append(("spec.runtime.parallelism",
                    f"preset {name!r} declares no parallelism arguments in the operator configuration; "
                    f"presets that take runtime.parallelism: {_presets_with(config, 'parallelism_args')}"))
    if (spec.nodes_per_replica or 1) > 1 and preset.multi_node is None:
        out.append(("spec.nodesPerReplica",
                    f"found {spec.nodes_per_replica}; preset {name!r} declares no multi-node commands in the operator "
                    f"configuration (allowed: 1); presets that serve across nodes: {_presets_with(config, 'multi_node')}"))
    return out


def parallelism_args(spec: ModelDeploymentSpec, preset: RuntimePresetConfig) -> list[str]:
    p = spec.runtime.parallelism
    if p is None or not preset.parallelism_args:
        return []
    tensor, pipeline = str(p.tensor or 1), str(p.pipeline or 1)
    return [a.replace("{tensor}", tensor).replace("{pipeline}", pipeline) for a in preset.parallelism_args]


def startup_probe(spec: ModelDeploymentSpec, preset: RuntimePresetConfig, readiness: dict[str, Any]) -> dict[str, Any] | None:
    """The readiness check, given startupTimeoutSeconds to pass once; liveness and readiness wait for it."""
    seconds = spec.runtime.startup_timeout_seconds or preset.startup_timeout_seconds
    if not seconds:
        return None
    handler = {k: v for k, v in readiness.items() if k in ("httpGet", "grpc", "tcpSocket")}
    return {**handler, "periodSeconds": STARTUP_PERIOD_SECONDS,
            "failureThreshold": math.ceil(seconds / STARTUP_PERIOD_SECONDS)}


def model_volume(uri: str, cache_claim: str | None = None) -> tuple[dict[str, Any], bool]:
    """The pod volume holding the model at MODEL_DIR, and whether a storage initializer must fill it.

    pvc://claim/path: the claim, read-only. oci://ref: an image volume (Kubernetes 1.36: the ImageVolume
    feature is GA and on), mounted read-only, pulled by the kubelet like any image: no init container.
    A cached model (model.cache): the cache claim, read-only, filled beforehand by its Job.
    Anything else: an emptyDir the storage initializer downloads into."""
    if cache_claim:
        return {"name": MODEL_VOLUME, "persistentVolumeClaim": {"claimName": cache_claim, "readOnly": True}}, False
    if uri.startswith("pvc://"):
        claim = uri[len("pvc://"):].partition("/")[0]
        return {"name": MODEL_VOLUME, "persistentVolumeClaim": {"claimName": claim, "readOnly": True}}, False
    if uri.startswith("oci://"):
        return {"name": MODEL_VOLUME, "image": {"reference": uri[len("oci://"):], "pullPolicy": "IfNotPresent"}}, False
    return {"name": MODEL_VOLUME, "emptyDir": {}}, True


def storage_initializer(spec: ModelDeploymentSpec, config: OperatorConfig, uri: str, volume: str) -> dict[str, Any]:
    """The container that downloads the model at uri into volume (mounted at MODEL_DIR); storage credentials
    come the same way the server gets them."""
    init = config.storage_initializer
    fetcher: dict[str, Any] = {
        "name": "storage-initializer",
        "image": init.image,
        "args": [uri, MODEL_DIR],
        "resources": {"requests": {"cpu": init.cpu, "memory": init.memory}, "limits": {"memory": init.memory_limit}},
        "volumeMounts": [{"name": volume, "mountPath": MODEL_DIR}],
        "securityContext": CONTAINER_SECURITY_CONTEXT,
    }
    credentials = [e.to_api() for e in (spec.runtime.env or []) if e.value_from is not None]
    if credentials:
        fetcher["env"] = credentials
    if spec.runtime.env_from:
        fetcher["envFrom"] = env_from_list(spec.runtime.env_from)
    return fetcher
