"""ModelDeployment -> Deployment, Service, HorizontalPodAutoscaler, PodDisruptionBudget."""

from __future__ import annotations

import math
from typing import Any

from ..api.modeldeployment import ModelDeploymentSpec
from ..config import OperatorConfig, RuntimePresetConfig
from ..labels import MODEL_URI_ANNOTATION, VERSION_LABEL
from .autoscaling import autoscaler
from .availability import graceful_shutdown, liveness_probe, topology_spread
from .common import (
    CONTAINER_SECURITY_CONTEXT,
    POD_SECURITY_CONTEXT,
    PROMETHEUS_NOT_CONFIGURED,
    Owner,
    Rendered,
    RenderError,
    container_resources,
    env_from_list,
    env_list,
    env_name_part,
    metadata,
    owner_note,
    pod_annotations,
    pod_scheduling,
    render_template,
    selector,
    service_host,
)
from .featureview import feature_server_url
from .gateway import http_route, model_version
from .leaderworkerset import API_VERSION as LWS_API_VERSION
from .leaderworkerset import KIND as LWS_KIND
from .leaderworkerset import LEADER_SELECTOR, render_leader_worker_set
from .model_cache import cache_claim_name, render_cache, uses_cache
from .monitoring import METRICS_PORT_NAME, pod_monitor, scrape_annotations, server_metrics
from .promql import VERSION_STABLE, error_rate_query, latency_p99_ms_query
from .serving import MODEL_DIR, MODEL_VOLUME, model_volume, parallelism_args, preset_problems, startup_probe, storage_initializer
from .shm import apply_shared_memory, shared_memory_size

COMPONENT = "predictor"
SERVICE_PORT = 80


def model_dir_for(uri: str) -> str:
    """pvc://claim/sub/path is mounted at /mnt/models, so the model sits at /mnt/models/sub/path."""
    if uri.startswith("pvc://"):
        sub_path = uri[len("pvc://"):].partition("/")[2].strip("/")
        return f"{MODEL_DIR}/{sub_path}" if sub_path else MODEL_DIR
    return MODEL_DIR


def pvc_claim(uri: str) -> str | None:
    return uri[len("pvc://"):].partition("/")[0] if uri.startswith("pvc://") else None


def service_url(owner: Owner, spec: ModelDeploymentSpec, config: OperatorConfig) -> str:
    scheme = "grpc" if spec.runtime.protocol == "grpc" else "http"
    return f"{scheme}://{service_host(owner.name, owner.namespace, config)}"


def _preset(spec: ModelDeploymentSpec, config: OperatorConfig) -> RuntimePresetConfig:
    if spec.runtime.preset == "custom":
        return RuntimePresetConfig(image=spec.runtime.image or "", port=spec.runtime.port or 8080,
                                   readiness_path=spec.runtime.readiness_path)
    preset = config.preset(spec.runtime.preset)
    if preset is None:
        raise RenderError("spec.runtime.preset",
                          f"found {spec.runtime.preset!r}; the operator configuration has: {', '.join(sorted(config.runtimes))}")
    return preset


def _fill(values: list[str], name: str, port: int, model_dir: str) -> list[str]:
    return [v.replace("{name}", name).replace("{port}", str(port)).replace("{model_dir}", model_dir) for v in values]


def _container_port(spec: ModelDeploymentSpec, preset: RuntimePresetConfig) -> tuple[str, int]:
    if spec.runtime.port:
        return spec.runtime.protocol or "http", spec.runtime.port
    if spec.runtime.protocol == "grpc":
        if not preset.grpc_port:
            raise RenderError("spec.runtime.protocol", f"preset {spec.runtime.preset!r} has no gRPC port; set runtime.port")
        return "grpc", preset.grpc_port
    return "http", preset.port


def _probe(spec: ModelDeploymentSpec, preset: RuntimePresetConfig, port_name: str, owner: Owner) -> dict[str, Any]:
    timing = {"periodSeconds": 10, "failureThreshold": 3}
    if port_name == "grpc":
        return {"grpc": {"port": _container_port(spec, preset)[1]}, **timing}
    path = spec.runtime.readiness_path or preset.readiness_path
    if path:
        return {"httpGet": {"path": path.replace("{name}", owner.name), "port": port_name}, **timing}
    return {"tcpSocket": {"port": port_name}, **timing}


def _pod_spec(owner: Owner, spec: ModelDeploymentSpec, config: OperatorConfig, model_uri: str) -> dict[str, Any]:
    preset = _preset(spec, config)
    for field_path, message in preset_problems(spec, preset, config):
        raise RenderError(field_path, message)
    port_name, port = _container_port(spec, preset)
    model_dir = model_dir_for(model_uri)
    gpu = spec.resources.gpu if spec.resources else None
    image = spec.runtime.image or (preset.gpu_image if gpu and preset.gpu_image else preset.image)
    operator_env = {"MODEL_NAME": owner.name, "MODEL_URI": model_uri, "MODEL_DIR": model_dir}
    for view in spec.features or []:
        operator_env[f"FEATURES_{env_name_part(view)}_URL"] = feature_server_url(view, owner.namespace, config)
    env = env_list(spec.runtime.env, operator_env)
    env_from = env_from_list(spec.runtime.env_from)

    volume, fetch = model_volume(model_uri, cache_claim_name(model_uri) if uses_cache(spec, model_uri) else None)
    server: dict[str, Any] = {
        "name": "server",
        "image": image,
        "ports": [{"name": port_name, "containerPort": port, "protocol": "TCP"}],
        "env": env,
        "resources": container_resources(spec.resources),
        "readinessProbe": _probe(spec, preset, port_name, owner),
        "volumeMounts": [{"name": MODEL_VOLUME, "mountPath": MODEL_DIR, "readOnly": True}],
        "securityContext": CONTAINER_SECURITY_CONTEXT,
    }
    command = spec.runtime.command or preset.command
    args = spec.runtime.args if spec.runtime.args is not None else preset.args
    if command:
        server["command"] = _fill(command, owner.name, port, model_dir)
    args = list(args or []) + parallelism_args(spec, preset)
    if args:
        server["args"] = _fill(args, owner.name, port, model_dir)
    if startup := startup_probe(spec, preset, server["readinessProbe"]):
        server["startupProbe"] = startup
        # Liveness only behind a startupProbe: a server still loading its model is not restarted for it.
        server["livenessProbe"] = liveness_probe(_liveness_handler(spec, preset, port_name, owner))
    metrics = server_metrics(spec, preset)
    if metrics is not None and metrics.port and metrics.port != port:
        server["ports"].append({"name": METRICS_PORT_NAME, "containerPort": metrics.port, "protocol": "TCP"})
    lifecycle, grace = graceful_shutdown(preset.drain_seconds, preset.termination_grace_seconds)
    if lifecycle:
        server["lifecycle"] = lifecycle
    if env_from:
        server["envFrom"] = env_from
    pod: dict[str, Any] = {
        "securityContext": POD_SECURITY_CONTEXT,
        "containers": [server],
        "volumes": [volume],
        "terminationGracePeriodSeconds": grace,
        **pod_scheduling(spec.resources, spec.scheduling, config),
    }
    spread = topology_spread(selector(owner, COMPONENT), _most_replicas(spec))
    if spread and (spec.nodes_per_replica or 1) == 1:
        pod["topologySpreadConstraints"] = spread
    if fetch:
        fetcher = storage_initializer(spec, config, model_uri, MODEL_VOLUME)
        pod["initContainers"] = [fetcher]
    if spec.service_account_name:
        pod["serviceAccountName"] = spec.service_account_name
    apply_shared_memory(pod, shared_memory_size(spec.resources, config), ("server",))
    return pod


def _liveness_handler(spec: ModelDeploymentSpec, preset: RuntimePresetConfig, port_name: str,
                      owner: Owner) -> dict[str, Any]:
    readiness = _probe(spec, preset, port_name, owner)
    if port_name != "grpc" and preset.liveness_path and not spec.runtime.readiness_path:
        return {"httpGet": {"path": preset.liveness_path.replace("{name}", owner.name), "port": port_name}}
    return {k: v for k, v in readiness.items() if k in ("httpGet", "grpc", "tcpSocket")}


def _most_replicas(spec: ModelDeploymentSpec) -> int:
    if spec.autoscaling is not None:
        return spec.autoscaling.max_replicas
    return spec.replicas if spec.replicas is not None else 1


def _check_analysis(owner: Owner, spec: ModelDeploymentSpec, config: OperatorConfig) -> None:
    """rollout.canary.analysis is judged from Prometheus, on the preset's series: both must be there."""
    analysis = spec.rollout.canary.analysis if spec.rollout and spec.rollout.canary else None
    if analysis is None:
        return
    if not config.prometheus.url:
        raise RenderError("spec.rollout.canary.analysis", "needs prometheus.url in the operator configuration "
                          "(the canary's error rate and latency are read from Prometheus)",
                          reason=PROMETHEUS_NOT_CONFIGURED)
    if analysis.max_error_rate is not None:
        error_rate_query(config, spec.runtime.preset, owner.namespace, owner.name, 60)
    if analysis.max_latency_ms is not None:
        latency_p99_ms_query(config, spec.runtime.preset, owner.namespace, owner.name, 60)


def check_signals(owner: Owner, spec: ModelDeploymentSpec, config: OperatorConfig) -> None:
    """The refusals of model signals (Prometheus in the configuration, the preset's series) without rendering
    the rest: for `mlplatform validate --config`. Raises RenderError."""
    _check_analysis(owner, spec, config)
    if spec.autoscaling is not None:
        autoscaler(owner, spec, config, {"name": owner.name}, "apps/v1", "Deployment")


def _groups(value: int | str, replicas: int, round_up: bool) -> int:
    if isinstance(value, int):
        return value
    share = replicas * int(str(value).rstrip("%")) / 100
    return math.ceil(share) if round_up else math.floor(share)


def _group_budget(spec: ModelDeploymentSpec) -> dict[str, Any]:
    """Multi-node: the budget counts replicas (groups). One evicted pod takes its whole group down (the group
    restarts as a whole), so k groups may be down when at most k pods may be evicted: the PDB over every pod
    of the model says maxUnavailable k (pods), and a group down (all its pods unhealthy) blocks the next."""
    replicas = spec.autoscaling.min_replicas if spec.autoscaling else (spec.replicas if spec.replicas is not None else 1)
    budget = spec.disruption_budget
    if budget is None:
        groups = 1
    elif budget.max_unavailable is not None:
        groups = _groups(budget.max_unavailable, replicas, round_up=True)
    else:
        groups = max(replicas - _groups(budget.min_available, replicas, round_up=True), 0)
    return {"maxUnavailable": groups}


def _disruption_budget(spec: ModelDeploymentSpec) -> dict[str, Any] | None:
    scales_out = spec.autoscaling is not None or (spec.replicas or 1) > 1
    if (spec.nodes_per_replica or 1) > 1 and (spec.disruption_budget or scales_out):
        return _group_budget(spec)
    if spec.disruption_budget:
        return spec.disruption_budget.to_api()
    # Default: voluntary evictions one pod at a time, never a budget that blocks every drain.
    return {"maxUnavailable": 1} if scales_out else None


def render_model_deployment(owner: Owner, spec: ModelDeploymentSpec, config: OperatorConfig,
                            model_uri: str | None) -> Rendered:
    """model_uri: spec.model.uri, or the artifact of spec.model.fromTrainingJob once known (else None)."""
    out = Rendered(notes=owner_note(owner))
    _check_analysis(owner, spec, config)
    pod_selector = selector(owner, COMPONENT)
    multi_node = (spec.nodes_per_replica or 1) > 1
    port_name = "grpc" if spec.runtime.protocol == "grpc" else "http"
    out.objects.append(render_template(
        "service.yaml.j2",
        metadata=metadata(owner, owner.name, COMPONENT),
        headless=False,
        selector={**pod_selector, **(LEADER_SELECTOR if multi_node else {})},
        ports=[{"name": port_name, "port": SERVICE_PORT, "targetPort": port_name, "protocol": "TCP",
                "appProtocol": "kubernetes.io/h2c" if port_name == "grpc" else "http"}],
    ))
    if spec.gateway:
        out.objects.append(http_route(owner, spec.gateway, COMPONENT, SERVICE_PORT, None,
                                      versions=(model_version(spec.model, model_uri), None)))
    if model_uri is None:
        out.notes.append(
            f"Deployment and HorizontalPodAutoscaler withheld: spec.model.fromTrainingJob "
            f"{spec.model.from_training_job!r} has no artifact yet; they are rendered with that TrainingJob's "
            f"status.artifactUri once a run succeeds (pass --artifact {spec.model.from_training_job}=URI to preview)."
        )
        return out
    suspended = bool(spec.suspend)
    autoscaled = spec.autoscaling is not None and not suspended
    replicas = 0 if suspended else (None if autoscaled else (spec.replicas if spec.replicas is not None else 1))
    rollout = {"maxSurge": "25%", "maxUnavailable": 0}
    if spec.rollout:
        rollout.update({k: v for k, v in spec.rollout.to_api().items() if k != "canary"})
    pod_spec = _pod_spec(owner, spec, config, model_uri)
    pod_labels = {**metadata(owner, owner.name, COMPONENT)["labels"], VERSION_LABEL: VERSION_STABLE}
    preset = _preset(spec, config)
    scraped = server_metrics(spec, preset)
    own_annotations = {MODEL_URI_ANNOTATION: model_uri}
    if scraped is not None and not config.prometheus.pod_monitors:
        own_annotations.update(scrape_annotations(scraped, _container_port(spec, preset)[1]))
    if multi_node:
        pod_metadata = {"labels": pod_labels,
                        "annotations": pod_annotations(owner, config, own_annotations)}
        out.objects.append(render_leader_worker_set(
            metadata(owner, owner.name, COMPONENT), replicas, spec.nodes_per_replica, rollout, pod_metadata,
            pod_spec, _preset(spec, config).multi_node))
    else:
        out.objects.append(render_template(
            "deployment.yaml.j2",
            metadata=metadata(owner, owner.name, COMPONENT),
            replicas=replicas,
            selector=pod_selector,
            rollout=rollout,
            pod_labels=pod_labels,
            pod_annotations=pod_annotations(owner, config, own_annotations),
            pod_spec=pod_spec,
        ))
    if autoscaled:
        out.objects.append(autoscaler(owner, spec, config, metadata(owner, owner.name, COMPONENT),
                                      LWS_API_VERSION if multi_node else "apps/v1",
                                      LWS_KIND if multi_node else "Deployment"))
    if scraped is not None and config.prometheus.pod_monitors:
        out.objects.append(pod_monitor(owner, metadata(owner, owner.name, COMPONENT), scraped,
                                       _container_port(spec, preset)))
    if uses_cache(spec, model_uri):
        out.objects += render_cache(owner, spec, config, model_uri)
    budget = None if suspended else _disruption_budget(spec)
    if budget:
        out.objects.append(render_template(
            "pdb.yaml.j2", metadata=metadata(owner, owner.name, COMPONENT), selector=pod_selector, budget=budget))
    return out
