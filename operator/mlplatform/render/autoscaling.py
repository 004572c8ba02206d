"""spec.autoscaling -> the autoscaler child: a HorizontalPodAutoscaler (engine hpa) or a KEDA ScaledObject
(engine keda: KEDA creates and owns the HPA). Either way the autoscaler owns the replica count: the workload is
rendered without replicas."""

from __future__ import annotations

from typing import Any

from ..api.modeldeployment import DEFAULT_IDLE_SECONDS, PROMETHEUS_TARGETS, ModelDeploymentSpec
from ..config import OperatorConfig
from .common import PROMETHEUS_NOT_CONFIGURED, Owner, RenderError, render_template
from .promql import target_query, wake_query

SCALED_OBJECT_API_VERSION = "keda.sh/v1alpha1"
SCALED_OBJECT_KIND = "ScaledObject"


def uses_keda(spec: ModelDeploymentSpec) -> bool:
    return spec.autoscaling is not None and spec.autoscaling.engine == "keda"


def prometheus_targets(spec: ModelDeploymentSpec) -> list[str]:
    """The targets set that are read from Prometheus (not the kubelet's cpu and memory)."""
    if spec.autoscaling is None:
        return []
    targets = spec.autoscaling.targets
    return [t for t in PROMETHEUS_TARGETS if getattr(targets, t) is not None]


def hpa_metrics(spec: ModelDeploymentSpec, config: OperatorConfig) -> list[dict[str, Any]]:
    """engine hpa: resource metrics, and per-pod custom metrics by the configured names (prometheus-adapter's
    rules in the chart produce them from the preset's series)."""
    targets = spec.autoscaling.targets
    metrics: list[dict[str, Any]] = []
    for resource, value in (("cpu", targets.cpu_utilization), ("memory", targets.memory_utilization)):
        if value is not None:
            metrics.append({"type": "Resource", "resource": {
                "name": resource, "target": {"type": "Utilization", "averageUtilization": value}}})
    for target in PROMETHEUS_TARGETS:
        value = getattr(targets, target)
        if value is not None:
            metrics.append({"type": "Pods", "pods": {
                "metric": {"name": getattr(config.metrics, target)},
                "target": {"type": "AverageValue", "averageValue": str(value)}}})
    return metrics


TRIGGER_NAMES = {"gpu_utilization": "gpu-utilization", "requests_per_second": "requests-per-second",
                 "queue_depth": "queue-depth", "kv_cache_utilization": "kv-cache-utilization",
                 "concurrency": "concurrency"}


def keda_triggers(owner: Owner, spec: ModelDeploymentSpec, config: OperatorConfig) -> list[dict[str, Any]]:
    autoscaling = spec.autoscaling
    targets = autoscaling.targets
    triggers: list[dict[str, Any]] = []
    for resource, value in (("cpu", targets.cpu_utilization), ("memory", targets.memory_utilization)):
        if value is not None:
            triggers.append({"type": resource, "metricType": "Utilization", "metadata": {"value": str(value)}})
    needs_prometheus = prometheus_targets(spec) or autoscaling.min_replicas == 0
    server = config.prometheus.url
    if needs_prometheus and not server:
        raise RenderError("spec.autoscaling", "engine keda with Prometheus targets or minReplicas 0 needs "
                                              "prometheus.url in the operator configuration",
                          reason=PROMETHEUS_NOT_CONFIGURED)
    for target in prometheus_targets(spec):
        query = target_query(config, spec.runtime.preset, target, owner.namespace, owner.name)
        triggers.append({"type": "prometheus", "name": TRIGGER_NAMES[target], "metricType": "AverageValue",
                         "metadata": {"serverAddress": server, "query": query,
                                      "threshold": str(getattr(targets, target)), "ignoreNullValues": "true"}})
    if autoscaling.min_replicas == 0:
        # At zero no replica reports anything: the gateway's pending requests wake the model (any > 0).
        per_replica = targets.queue_depth or targets.concurrency or 1
        triggers.append({"type": "prometheus", "name": "wake", "metricType": "AverageValue",
                         "metadata": {"serverAddress": server, "query": wake_query(config, owner.namespace, owner.name),
                                      "threshold": str(per_replica), "activationThreshold": "0",
                                      "ignoreNullValues": "true"}})
    return triggers


def scaled_object(owner: Owner, spec: ModelDeploymentSpec, config: OperatorConfig, metadata: dict[str, Any],
                  target_api_version: str, target_kind: str, stabilization_seconds: int) -> dict[str, Any]:
    autoscaling = spec.autoscaling
    idle = autoscaling.idle_seconds if autoscaling.idle_seconds is not None else DEFAULT_IDLE_SECONDS
    return {
        "apiVersion": SCALED_OBJECT_API_VERSION, "kind": SCALED_OBJECT_KIND, "metadata": metadata,
        "spec": {
            "scaleTargetRef": {"apiVersion": target_api_version, "kind": target_kind, "name": owner.name},
            "pollingInterval": config.defaults.keda_polling_interval_seconds,
            "cooldownPeriod": idle,
            "minReplicaCount": autoscaling.min_replicas,
            "maxReplicaCount": autoscaling.max_replicas,
            "advanced": {"horizontalPodAutoscalerConfig": {
                "name": owner.name,
                "behavior": {"scaleDown": {"stabilizationWindowSeconds": stabilization_seconds}}}},
            "triggers": keda_triggers(owner, spec, config),
        },
    }


def hpa(owner: Owner, spec: ModelDeploymentSpec, config: OperatorConfig, metadata: dict[str, Any],
        target_api_version: str, target_kind: str, stabilization_seconds: int) -> dict[str, Any]:
    return render_template(
        "hpa.yaml.j2", metadata=metadata, target=owner.name, target_api_version=target_api_version,
        target_kind=target_kind, min_replicas=spec.autoscaling.min_replicas,
        max_replicas=spec.autoscaling.max_replicas, metrics=hpa_metrics(spec, config),
        scale_down_stabilization_seconds=stabilization_seconds)


def autoscaler(owner: Owner, spec: ModelDeploymentSpec, config: OperatorConfig, metadata: dict[str, Any],
               target_api_version: str, target_kind: str) -> dict[str, Any]:
    stabilization = spec.autoscaling.scale_down_stabilization_seconds
    if stabilization is None:
        stabilization = config.defaults.scale_down_stabilization_seconds
    build = scaled_object if uses_keda(spec) else hpa
    return build(owner, spec, config, metadata, target_api_version, target_kind, stabilization)
