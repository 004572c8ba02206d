"""Pieces every rendered pod and object shares: labels, owner references, security, GPUs, env."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import yaml

from ..api import API_VERSION
from ..api.common import Resources, Scheduling
from ..config import OperatorConfig
from ..labels import (
    COMPONENT_LABEL,
    INSTANCE_LABEL,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    NAME_LABEL,
    OWNER_LABEL,
    PART_OF_LABEL,
)

GPU_RESOURCE = "nvidia.com/gpu"
GPU_TAINT_KEY = "nvidia.com/gpu"

_templates = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    autoescape=False,
    auto_reload=False,  # templates ship with the package: no stat() of the file on every render
)


PROMETHEUS_NOT_CONFIGURED = "PrometheusNotConfigured"


class RenderError(ValueError):
    """The spec cannot be rendered with this operator configuration (e.g. an unknown GPU type).
    reason: the Stalled reason it is reported with."""

    def __init__(self, field: str, message: str, reason: str = "InvalidSpec"):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.reason = reason


@dataclass
class Owner:
    kind: str
    name: str
    namespace: str
    uid: str | None = None  # known once the resource exists in a cluster
    generation: int | None = None
    annotations: dict[str, str] = field(default_factory=dict)  # the custom resource's own


@dataclass
class Rendered:
    """Child manifests, plus notes on what only the running operator can know."""

    objects: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# libyaml's parser when PyYAML was built with it (the PyPI wheels are): the pure-Python one took 29% of
# the operator's CPU at scale, every reconcile parsing its rendered templates.
_YamlLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def render_template(name: str, **values: Any) -> dict[str, Any]:
    """A jinja2 template whose every value is inserted with `tojson` -> one Kubernetes object."""
    return yaml.load(_templates.get_template(name).render(**values), Loader=_YamlLoader)  # noqa: S506 - a safe loader


def pod_annotations(owner: Owner, config: OperatorConfig, own: dict[str, str]) -> dict[str, str]:
    """The operator's pod annotations, plus the resource's annotations that the configuration propagates."""
    prefixes = tuple(config.pod_annotation_prefixes)
    copied = {k: v for k, v in owner.annotations.items() if prefixes and k.startswith(prefixes)}
    return {**copied, **own}


def labels(owner: Owner, component: str) -> dict[str, str]:
    return {
        **selector(owner, component),
        MANAGED_BY_LABEL: MANAGED_BY,
        PART_OF_LABEL: "mlplatform",
        # The label every child carries, so the operator can list (and prune) a resource's children.
        OWNER_LABEL: f"{owner.kind.lower()}.{owner.name}",
    }


def selector(owner: Owner, component: str) -> dict[str, str]:
    """Immutable selector labels: a subset of labels() that never changes for a resource."""
    return {
        NAME_LABEL: owner.kind.lower(),
        INSTANCE_LABEL: owner.name,
        COMPONENT_LABEL: component,
    }


def metadata(owner: Owner, name: str, component: str, extra_labels: dict | None = None,
             annotations: dict | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": owner.namespace,
        "labels": {**labels(owner, component), **(extra_labels or {})},
    }
    if annotations:
        meta["annotations"] = annotations
    if owner.uid:
        meta["ownerReferences"] = [{
            "apiVersion": API_VERSION,
            "kind": owner.kind,
            "name": owner.name,
            "uid": owner.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }]
    return meta


def owner_note(owner: Owner) -> list[str]:
    if owner.uid:
        return []
    return [f"ownerReferences: added at apply time, pointing at {owner.kind} {owner.namespace}/{owner.name} "
            f"(its uid is assigned by the API server)"]


# Many public server images default to root; a fixed non-root user lets them start under runAsNonRoot.
POD_SECURITY_CONTEXT = {
    "runAsNonRoot": True,
    "runAsUser": 1000,
    "runAsGroup": 1000,
    "fsGroup": 1000,
    "seccompProfile": {"type": "RuntimeDefault"},
}
CONTAINER_SECURITY_CONTEXT = {
    "runAsNonRoot": True,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def gpu_resource_name(resources: Resources | None) -> str | None:
    if resources is None or resources.gpu is None:
        return None
    if resources.gpu.mig:
        return f"nvidia.com/mig-{resources.gpu.mig}"
    return GPU_RESOURCE


def container_resources(resources: Resources | None) -> dict[str, Any]:
    """cpu is a request; memory is request and limit; GPUs are limits (and requests by k8s rule)."""
    if resources is None:
        return {}
    requests: dict[str, Any] = {}
    limits: dict[str, Any] = {}
    if resources.cpu is not None:
        requests["cpu"] = str(resources.cpu)
    if resources.memory is not None:
        requests["memory"] = limits["memory"] = str(resources.memory)
    gpu_name = gpu_resource_name(resources)
    if gpu_name:
        limits[gpu_name] = str(resources.gpu.count)
    out = {}
    if requests:
        out["requests"] = requests
    if limits:
        out["limits"] = limits
    return out


def pod_scheduling(resources: Resources | None, scheduling: Scheduling | None, config: OperatorConfig,
                   field_prefix: str = "spec") -> dict[str, Any]:
    """nodeSelector, tolerations, priorityClassName: GPU pods get the toleration and their type's labels."""
    node_selector: dict[str, str] = dict((scheduling.node_selector if scheduling else None) or {})
    tolerations: list[dict[str, Any]] = [
        t.to_api() for t in ((scheduling.tolerations if scheduling else None) or [])
    ]
    gpu = resources.gpu if resources else None
    if gpu is not None:
        if gpu.type:
            if gpu.type not in config.gpu_types:
                raise RenderError(
                    f"{field_prefix}.resources.gpu.type",
                    f"found {gpu.type!r}; allowed (operator configuration): {', '.join(sorted(config.gpu_types))}",
                )
            node_selector.update(config.gpu_types[gpu.type])
        gpu_toleration = {"key": GPU_TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}
        if gpu_toleration not in tolerations:
            tolerations.append(gpu_toleration)
    out: dict[str, Any] = {}
    if node_selector:
        out["nodeSelector"] = node_selector
    if tolerations:
        out["tolerations"] = tolerations
    if scheduling and scheduling.priority_class_name:
        out["priorityClassName"] = scheduling.priority_class_name
    return out


def env_list(user_env: list | None, operator_env: dict[str, str]) -> list[dict[str, Any]]:
    """Operator-set variables first; a user variable of the same name overrides it."""
    user = [e.to_api() for e in (user_env or [])]
    user_names = {e["name"] for e in user}
    return [{"name": k, "value": v} for k, v in operator_env.items() if k not in user_names] + user


def env_from_list(user_env_from: list | None) -> list[dict[str, Any]]:
    return [e.to_api() for e in (user_env_from or [])]


def env_name_part(name: str) -> str:
    """'driver-stats' -> 'DRIVER_STATS' for FEATURES_<NAME>_URL."""
    return name.upper().replace("-", "_").replace(".", "_")


def service_host(name: str, namespace: str, config: OperatorConfig) -> str:
    return f"{name}.{namespace}.svc.{config.defaults.cluster_domain}"
