"""FeatureView -> Feast repo ConfigMap, materialization Job and CronJob, feature server Deployment + Service."""

from __future__ import annotations

from typing import Any

from ..api.featurestore import FeatureStoreSpec
from ..api.featureview import FeatureViewSpec
from ..config import OperatorConfig
from ..labels import FEAST_REPO_HASH_ANNOTATION, MATERIALIZATION_SPEC_HASH_ANNOTATION, short_hash
from .common import (
    CONTAINER_SECURITY_CONTEXT,
    POD_SECURITY_CONTEXT,
    Owner,
    Rendered,
    container_resources,
    metadata,
    owner_note,
    pod_annotations,
    pod_scheduling,
    render_template,
    selector,
    service_host,
)
from .feast import FEAST_REPO_MOUNT, apply_command, feast_repo_files, materialize_command, serve_command
from .feast_stores import secret_env
from .shm import apply_shared_memory, shared_memory_size

SERVER_COMPONENT = "feature-server"
MATERIALIZE_COMPONENT = "materializer"
REPO_COMPONENT = "feast-repo"
REPO_VOLUME = "feast-repo"
SERVICE_PORT = 80


def repo_configmap_name(name: str) -> str:
    """The ConfigMap holding the Feast repo of the FeatureView `name` (TrainingJobs mount it too)."""
    return f"{name}-feast-repo"


def server_name(name: str) -> str:
    return f"{name}-features"


def cronjob_name(name: str) -> str:
    return f"{name}-materialize"


def materialization_spec_hash(spec: FeatureViewSpec, config: OperatorConfig,
                              store: FeatureStoreSpec | None = None) -> str:
    """Changes to what gets materialized (not to schedule, serving or suspend) re-run materialization."""
    data = spec.to_api()
    for key in ("materialization", "serving", "suspend", "freshness", "description", "owner"):
        data.pop(key, None)
    data["_feast"] = config.feast.to_api()
    if store is not None:
        data["_store"] = store.to_api()
    return short_hash(data, 10)


def materialization_job_name(name: str, spec_hash: str) -> str:
    return f"{name}-materialize-{spec_hash}"


def feature_server_url(name: str, namespace: str, config: OperatorConfig) -> str:
    """Deterministic, so a ModelDeployment can be rendered before its FeatureViews exist."""
    return f"http://{service_host(server_name(name), namespace, config)}"


def is_online(spec: FeatureViewSpec) -> bool:
    return spec.online is not False


def feast_pod(config: OperatorConfig, configmap: str, command: list[str], resources, resources_field: str,
              restart_policy: str | None = None, port: int | None = None,
              store: FeatureStoreSpec | None = None) -> dict[str, Any]:
    """A pod of the Feast image with the repo ConfigMap `configmap` mounted; the team store's secrets as env
    from secretKeyRef (feature_store.yaml names them as ${ENV})."""
    container: dict[str, Any] = {
        "name": "feast",
        "image": config.feast.image,
        "command": command,
        "env": [{"name": "FEAST_USAGE", "value": "False"}, {"name": "HOME", "value": "/tmp"},
                *(e.to_env() for e in (secret_env(store) if store is not None else []))],
        "resources": container_resources(resources),
        "volumeMounts": [{"name": REPO_VOLUME, "mountPath": FEAST_REPO_MOUNT, "readOnly": True}],
        "securityContext": CONTAINER_SECURITY_CONTEXT,
    }
    if config.feast.env_from:
        container["envFrom"] = config.feast.env_from
    if port is not None:
        container["ports"] = [{"name": "http", "containerPort": port, "protocol": "TCP"}]
        container["readinessProbe"] = {"httpGet": {"path": "/health", "port": "http"}, "periodSeconds": 10}
    pod: dict[str, Any] = {
        "securityContext": POD_SECURITY_CONTEXT,
        "containers": [container],
        "volumes": [{"name": REPO_VOLUME, "configMap": {"name": configmap}}],
        **pod_scheduling(resources, None, config, field_prefix=resources_field),
    }
    if restart_policy:
        pod["restartPolicy"] = restart_policy
    apply_shared_memory(pod, shared_memory_size(resources, config), ("feast",))
    return pod


def _materialize_job_spec(owner: Owner, spec: FeatureViewSpec, config: OperatorConfig, labels: dict,
                          store: FeatureStoreSpec | None) -> dict[str, Any]:
    resources = spec.materialization.resources if spec.materialization else None
    command = materialize_command() if is_online(spec) else apply_command()
    pod_metadata = {"labels": labels}
    if annotations := pod_annotations(owner, config, {}):
        pod_metadata["annotations"] = annotations
    return {
        "backoffLimit": 2,
        "ttlSecondsAfterFinished": config.defaults.materialization_ttl_seconds_after_finished,
        "template": {
            "metadata": pod_metadata,
            "spec": feast_pod(config, repo_configmap_name(owner.name), command, resources, "spec.materialization", "Never",
                              store=store),
        },
    }


def render_feature_view(owner: Owner, spec: FeatureViewSpec, config: OperatorConfig,
                        include_materialization_job: bool = True, store: FeatureStoreSpec | None = None) -> Rendered:
    """include_materialization_job: False once the on-change Job for this spec finished and was removed
    (by its TTL), so that it is not started again. store: the team FeatureStore's spec (None: the operator's)."""
    out = Rendered(notes=owner_note(owner))
    files = feast_repo_files(owner.namespace, owner.name, spec, config.feast, store)
    out.objects.append(render_template(
        "configmap.yaml.j2",
        metadata=metadata(owner, repo_configmap_name(owner.name), REPO_COMPONENT),
        data=files,
    ))
    job_labels = metadata(owner, "", MATERIALIZE_COMPONENT)["labels"]
    spec_hash = materialization_spec_hash(spec, config)
    if include_materialization_job:
        out.objects.append(render_template(
            "job.yaml.j2",
            metadata=metadata(owner, materialization_job_name(owner.name, spec_hash), MATERIALIZE_COMPONENT,
                              annotations={MATERIALIZATION_SPEC_HASH_ANNOTATION: spec_hash}),
            job_spec=_materialize_job_spec(owner, spec, config, job_labels, store),
        ))
    if not is_online(spec):
        out.notes.append("spec.online is false: the Job only registers the view (feast apply); "
                         "no CronJob and no feature server")
        return out
    schedule = (spec.materialization.schedule if spec.materialization else None) or config.feast.default_schedule
    out.objects.append(render_template(
        "cronjob.yaml.j2",
        metadata=metadata(owner, cronjob_name(owner.name), MATERIALIZE_COMPONENT),
        schedule=schedule,
        suspend=bool(spec.suspend),
        job_labels=job_labels,
        job_spec=_materialize_job_spec(owner, spec, config, job_labels, store),
    ))
    serving = spec.serving
    server_selector = selector(owner, SERVER_COMPONENT)
    server_meta = metadata(owner, server_name(owner.name), SERVER_COMPONENT)
    out.objects.append(render_template(
        "deployment.yaml.j2",
        metadata=server_meta,
        replicas=serving.replicas if serving and serving.replicas is not None else 1,
        selector=server_selector,
        rollout={"maxSurge": "25%", "maxUnavailable": 0},
        pod_labels=server_meta["labels"],
        pod_annotations=pod_annotations(owner, config, {FEAST_REPO_HASH_ANNOTATION: short_hash(files, 10)}),
        pod_spec=feast_pod(config, repo_configmap_name(owner.name), serve_command(config.feast.port),
                           serving.resources if serving else None, "spec.serving", port=config.feast.port, store=store),
    ))
    out.objects.append(render_template(
        "service.yaml.j2",
        metadata=metadata(owner, server_name(owner.name), SERVER_COMPONENT),
        headless=False,
        selector=server_selector,
        ports=[{"name": "http", "port": SERVICE_PORT, "targetPort": "http", "protocol": "TCP", "appProtocol": "http"}],
    ))
    return out
