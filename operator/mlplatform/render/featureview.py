"""FeatureView -> Feast repo ConfigMap, materialization Job and CronJob, feature server Deployment + Service."""

from __future__ import annotations

from typing import Any

from ..api.featurestore import FeatureStoreSpec
from ..api.featureview import FeatureViewSpec
from ..config import OperatorConfig
from ..labels import BACKFILL_WINDOW_ANNOTATION, FEAST_REPO_HASH_ANNOTATION, MATERIALIZATION_SPEC_HASH_ANNOTATION, short_hash
from .availability import topology_spread
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
from .feast import (
    FEAST_REPO_MOUNT,
    FEAST_TYPES,
    apply_command,
    backfill_command,
    feast_repo_files,
    materialize_command,
    serve_command,
)
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


def server_replicas(spec: FeatureViewSpec) -> int:
    """Desired feature servers: serving.replicas (default 1); under autoscaling, its minimum."""
    serving = spec.serving
    if serving and serving.autoscaling:
        return serving.autoscaling.min_replicas
    return serving.replicas if serving and serving.replicas is not None else 1


def schema_hash(spec: FeatureViewSpec) -> str:
    """Hash of the entities and features with their types (Feast's names, so FLOAT and FLOAT32 agree), order-free:
    what a model trained on this view depends on."""
    entities = sorted((e.name, e.join_key, e.value_type) for e in spec.entities)
    features = sorted((f.name, FEAST_TYPES[f.dtype]) for f in spec.features)
    return short_hash({"entities": entities, "features": features}, 8)


def source_store_problem(spec: FeatureViewSpec, store: FeatureStoreSpec | None, store_name: str | None) -> str | None:
    """A source the chosen offline store cannot read: path needs type file; postgres/bigquery/snowflake/redshift
    need that type. The operator's own stores (store None) read path sources only (as before)."""
    kind = spec.source.kind
    needed = "file" if kind == "path" else kind
    have = store.offline_store.type if store is not None else None
    if store is None:
        if kind == "path":
            return None
        return (f"spec.source.{kind} needs a FeatureStore whose offlineStore.type is {kind}; no FeatureStore is used "
                "(spec.store is unset and there is no FeatureStore `default` in the namespace)")
    if have != needed:
        return (f"spec.source.{kind} needs offlineStore.type {needed}; FeatureStore {store_name} has offlineStore.type "
                f"{have}")
    return None


def backfill_hash(spec: FeatureViewSpec) -> str | None:
    backfill = spec.materialization.backfill if spec.materialization else None
    return short_hash({"start": backfill.start, "end": backfill.end}, 10) if backfill else None


def backfill_job_name(name: str, window_hash: str) -> str:
    return f"{name}-backfill-{window_hash}"


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
        container["livenessProbe"] = {"httpGet": {"path": "/health", "port": "http"}, "periodSeconds": 20,
                                      "timeoutSeconds": 5, "failureThreshold": 3, "initialDelaySeconds": 30}
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
                        include_materialization_job: bool = True, store: FeatureStoreSpec | None = None,
                        include_backfill_job: bool = True) -> Rendered:
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
    spec_hash = materialization_spec_hash(spec, config, store)
    if include_materialization_job:
        out.objects.append(render_template(
            "job.yaml.j2",
            metadata=metadata(owner, materialization_job_name(owner.name, spec_hash), MATERIALIZE_COMPONENT,
                              annotations={MATERIALIZATION_SPEC_HASH_ANNOTATION: spec_hash}),
            job_spec=_materialize_job_spec(owner, spec, config, job_labels, store),
        ))
    if (window_hash := backfill_hash(spec)) is not None and is_online(spec) and include_backfill_job:
        backfill = spec.materialization.backfill
        job_spec = _materialize_job_spec(owner, spec, config, job_labels, store)
        job_spec["template"]["spec"]["containers"][0]["command"] = backfill_command(backfill.start, backfill.end)
        out.objects.append(render_template(
            "job.yaml.j2",
            metadata=metadata(owner, backfill_job_name(owner.name, window_hash), MATERIALIZE_COMPONENT,
                              annotations={BACKFILL_WINDOW_ANNOTATION: f"{backfill.start}/{backfill.end}"}),
            job_spec=job_spec,
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
        time_zone=spec.materialization.time_zone if spec.materialization else None,
        suspend=bool(spec.suspend),
        job_labels=job_labels,
        job_spec=_materialize_job_spec(owner, spec, config, job_labels, store),
    ))
    serving = spec.serving
    server_selector = selector(owner, SERVER_COMPONENT)
    server_meta = metadata(owner, server_name(owner.name), SERVER_COMPONENT)
    autoscaling = serving.autoscaling if serving else None
    server_pod = feast_pod(config, repo_configmap_name(owner.name), serve_command(config.feast.port),
                           serving.resources if serving else None, "spec.serving", port=config.feast.port, store=store)
    spread = topology_spread(server_selector, autoscaling.max_replicas if autoscaling else server_replicas(spec))
    if spread:
        server_pod["topologySpreadConstraints"] = spread
    out.objects.append(render_template(
        "deployment.yaml.j2",
        metadata=server_meta,
        replicas=None if autoscaling else server_replicas(spec),
        selector=server_selector,
        rollout={"maxSurge": "25%", "maxUnavailable": 0},
        pod_labels=server_meta["labels"],
        pod_annotations=pod_annotations(owner, config, {FEAST_REPO_HASH_ANNOTATION: short_hash(files, 10)}),
        pod_spec=server_pod,
    ))
    if autoscaling is not None:
        targets = autoscaling.targets
        metrics = [{"type": "Resource", "resource": {"name": resource, "target": {"type": "Utilization",
                                                                                   "averageUtilization": value}}}
                   for resource, value in (("cpu", targets.cpu_utilization), ("memory", targets.memory_utilization))
                   if value is not None]
        out.objects.append(render_template(
            "hpa.yaml.j2", metadata=metadata(owner, server_name(owner.name), SERVER_COMPONENT),
            target_api_version="apps/v1", target_kind="Deployment", target=server_name(owner.name),
            min_replicas=autoscaling.min_replicas, max_replicas=autoscaling.max_replicas, metrics=metrics,
            scale_down_stabilization_seconds=300))
    if (autoscaling.min_replicas if autoscaling else server_replicas(spec)) >= 2:
        # Voluntary disruptions (drains) take one feature server at a time; never a budget that blocks every drain.
        out.objects.append(render_template(
            "pdb.yaml.j2", metadata=metadata(owner, server_name(owner.name), SERVER_COMPONENT),
            selector=server_selector, budget={"maxUnavailable": 1}))
    out.objects.append(render_template(
        "service.yaml.j2",
        metadata=metadata(owner, server_name(owner.name), SERVER_COMPONENT),
        headless=False,
        selector=server_selector,
        ports=[{"name": "http", "port": SERVICE_PORT, "targetPort": "http", "protocol": "TCP", "appProtocol": "http"}],
    ))
    return out
