"""BatchPrediction -> the scorer ConfigMap, an Indexed Job per run, and a CronJob for scheduled runs.

Every run's Job carries the same pod template: worker i (its completion index) scores shard i. The run number
reaches the pod through its own annotation (downward API), so that a Job the CronJob creates, which cannot know
its run number, is numbered by the operator before it starts (it is created suspended; the operator writes the
annotation and unsuspends it, see controllers/batchprediction.py): OUTPUT_URI is <output.uri>/run-$(MLPLATFORM_RUN)/.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..api.batchprediction import BatchPredictionSpec
from ..config import OperatorConfig
from ..labels import MODEL_URI_ANNOTATION, RUN_LABEL, RUN_SPEC_HASH_ANNOTATION, short_hash
from .common import (
    CONTAINER_SECURITY_CONTEXT,
    POD_SECURITY_CONTEXT,
    Owner,
    Rendered,
    RenderError,
    container_resources,
    env_from_list,
    env_list,
    metadata,
    owner_note,
    pod_annotations,
    pod_scheduling,
    render_template,
)
from .serving import MODEL_DIR, MODEL_VOLUME, model_volume, storage_initializer
from .shm import apply_shared_memory, shared_memory_size

COMPONENT = "scorer"
CONTAINER = "scorer"
SCORER_MOUNT = "/opt/mlplatform"
SCORER_FILE = "batch_score.py"
SCORER_SOURCE = Path(__file__).resolve().parent.parent / "workers" / SCORER_FILE
DATA_MOUNT_ROOT = "/mnt/data"
COMPLETION_INDEX = "metadata.annotations['batch.kubernetes.io/job-completion-index']"
RUN_ANNOTATION = "mlplatform.dev/run"
LINEAGE_ANNOTATION = "mlplatform.dev/lineage"
TRIGGER_LABEL = "mlplatform.dev/trigger"
EXIT_NOT_RETRYABLE = 3  # workers/batch_score.py: the shard cannot be scored as configured
DEFAULT_BACKOFF_LIMIT_PER_INDEX = 2
# The image's Python runs our entrypoint (python3 in every preset image: KServe's, MLServer's, vLLM's).
SCORER_COMMAND = ["python3", f"{SCORER_MOUNT}/{SCORER_FILE}"]


def job_name(name: str, run: int) -> str:
    return f"{name}-{run}"


def scorer_configmap_name(name: str) -> str:
    return f"{name}-scorer"


def cronjob_name(name: str) -> str:
    return f"{name}-scheduled"


def run_output_uri(spec: BatchPredictionSpec, run: int | str) -> str:
    return f"{spec.output.uri.rstrip('/')}/run-{run}/"


def run_spec_hash(spec: BatchPredictionSpec) -> str:
    """A run's identity: every spec field but those whose edit starts no run."""
    data = spec.to_api()
    for key in ("suspend", "schedule"):
        data.pop(key, None)
    return short_hash(data)


def _claim_of(uri: str) -> tuple[str, str] | None:
    """pvc://claim/path -> (claim, path inside the claim)."""
    if not uri.startswith("pvc://"):
        return None
    claim, _, path = uri[len("pvc://"):].partition("/")
    return claim, path


def pod_path(uri: str) -> str:
    """What the worker opens: object store URIs as they are, a claim's path under its mount."""
    claim = _claim_of(uri)
    if claim is None:
        return uri
    return f"{DATA_MOUNT_ROOT}/{claim[0]}/{claim[1]}".rstrip("/")


def _data_volumes(spec: BatchPredictionSpec) -> tuple[list[dict], list[dict]]:
    """The claims of input.uri (read-only) and output.uri (writable), one volume per claim."""
    read_only: dict[str, bool] = {}
    for uri, writable in ((spec.input.uri, False), (spec.output.uri, True)):
        claim = _claim_of(uri)
        if claim is not None:
            read_only[claim[0]] = read_only.get(claim[0], True) and not writable
    # readOnly only when true: the API server omits a false one, and the intent must stay a subset of the live Job
    volumes = [{"name": f"data-{claim}"[:63], "persistentVolumeClaim": {"claimName": claim, **({"readOnly": True} if ro else {})}}
               for claim, ro in read_only.items()]
    mounts = [{"name": f"data-{claim}"[:63], "mountPath": f"{DATA_MOUNT_ROOT}/{claim}", **({"readOnly": True} if ro else {})}
              for claim, ro in read_only.items()]
    return volumes, mounts


def image_of(spec: BatchPredictionSpec, config: OperatorConfig) -> str:
    if spec.runtime.image:
        return spec.runtime.image
    preset = config.preset(spec.runtime.preset)
    if preset is None:
        raise RenderError("spec.runtime.preset", f"found {spec.runtime.preset!r}; the operator configuration has no "
                          f"such runtime preset (allowed: {', '.join(sorted(config.runtimes))})")
    gpu = spec.resources is not None and spec.resources.gpu is not None
    return preset.gpu_image if gpu and preset.gpu_image else preset.image


def shard_env(owner: Owner, spec: BatchPredictionSpec, model_uri: str) -> list[dict[str, Any]]:
    """The shard's environment: the run number and shard index from the pod's own annotations (downward API),
    then what every preset and custom image reads."""
    plain = {
        "SHARD_COUNT": str(spec.shards or 1),
        "INPUT_URI": pod_path(spec.input.uri),
        # $(MLPLATFORM_RUN) is expanded by the kubelet from the variable defined before it.
        "OUTPUT_URI": pod_path(run_output_uri(spec, "$(MLPLATFORM_RUN)")),
        "MODEL_URI": model_uri,
        "MODEL_DIR": MODEL_DIR,
        "PRESET": spec.runtime.preset,
        "SERVED_MODEL_NAME": owner.name,
    }
    if spec.model.format:
        plain["MODEL_FORMAT"] = spec.model.format
    from_pod = [
        {"name": "MLPLATFORM_RUN", "valueFrom": {"fieldRef": {"fieldPath": f"metadata.annotations['{RUN_ANNOTATION}']"}}},
        {"name": "SHARD_INDEX", "valueFrom": {"fieldRef": {"fieldPath": COMPLETION_INDEX}}},
    ]
    user_names = {e.name for e in spec.runtime.env or []}
    return [e for e in from_pod if e["name"] not in user_names] + env_list(spec.runtime.env, plain)


def _pod_spec(owner: Owner, spec: BatchPredictionSpec, config: OperatorConfig, model_uri: str) -> dict[str, Any]:
    model_vol, needs_download = model_volume(model_uri)
    data_volumes, data_mounts = _data_volumes(spec)
    model_mount = {"name": MODEL_VOLUME, "mountPath": MODEL_DIR, **({} if needs_download else {"readOnly": True})}
    mounts = [model_mount, *data_mounts]
    volumes = [model_vol, *data_volumes]
    custom = spec.runtime.preset == "custom"
    if not custom:
        volumes.append({"name": "scorer", "configMap": {"name": scorer_configmap_name(owner.name)}})
        mounts.append({"name": "scorer", "mountPath": SCORER_MOUNT, "readOnly": True})
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": image_of(spec, config),
        "env": shard_env(owner, spec, model_uri),
        "resources": container_resources(spec.resources),
        "volumeMounts": mounts,
        "securityContext": CONTAINER_SECURITY_CONTEXT,
        "terminationMessagePolicy": "File",
    }
    command = spec.runtime.command or (None if custom else SCORER_COMMAND)
    if command:
        container["command"] = command
    if spec.runtime.args:
        container["args"] = spec.runtime.args
    if spec.runtime.env_from:
        container["envFrom"] = env_from_list(spec.runtime.env_from)
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "securityContext": POD_SECURITY_CONTEXT,
        "containers": [container],
        "volumes": volumes,
        **pod_scheduling(spec.resources, spec.scheduling, config),
    }
    if needs_download:
        # The serving pods' storage initializer: it reads spec.runtime's credentials, as a ModelDeployment's.
        pod["initContainers"] = [storage_initializer(spec, config, model_uri, MODEL_VOLUME)]
    if spec.service_account_name:
        pod["serviceAccountName"] = spec.service_account_name
    apply_shared_memory(pod, shared_memory_size(spec.resources, config), (CONTAINER,))
    return pod


def job_spec(owner: Owner, spec: BatchPredictionSpec, config: OperatorConfig, model_uri: str,
             run: int | None, suspend: bool) -> dict[str, Any]:
    """The Indexed Job of a run: one completion per shard, each retried alone (backoffLimitPerIndex), the first
    shard out of retries failing the run (maxFailedIndexes 0); a disruption is retried without counting, exit
    code 3 (not retryable) fails the shard at once. run None: a CronJob's template, numbered when adopted."""
    annotations = {RUN_ANNOTATION: str(run)} if run is not None else {}
    labels = metadata(owner, "", COMPONENT)["labels"]
    if run is not None:
        labels = {**labels, RUN_LABEL: str(run)}
    return {
        "completionMode": "Indexed",
        "completions": spec.shards or 1,
        "parallelism": spec.parallelism or spec.shards or 1,
        "backoffLimitPerIndex": (spec.backoff_limit_per_index if spec.backoff_limit_per_index is not None
                                 else DEFAULT_BACKOFF_LIMIT_PER_INDEX),
        "maxFailedIndexes": 0,
        "podFailurePolicy": {"rules": [
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
            {"action": "FailIndex", "onExitCodes": {"containerName": CONTAINER, "operator": "In",
                                                    "values": [EXIT_NOT_RETRYABLE]}},
        ]},
        "ttlSecondsAfterFinished": config.defaults.training_ttl_seconds_after_finished,
        "suspend": suspend,
        "template": {
            "metadata": {"labels": labels, "annotations": pod_annotations(owner, config, annotations)},
            "spec": _pod_spec(owner, spec, config, model_uri),
        },
    }


def lineage_annotation(lineage: dict | None) -> dict[str, str]:
    return {LINEAGE_ANNOTATION: json.dumps(lineage, sort_keys=True, separators=(",", ":"))} if lineage else {}


def render_batch_prediction(owner: Owner, spec: BatchPredictionSpec, config: OperatorConfig, run: int | None,
                            run_model_uri: str | None, model_uri_now: str | None,
                            run_lineage: dict | None = None, lineage_now: dict | None = None) -> Rendered:
    """The children: the scorer ConfigMap; run `run`'s Job with the model pinned for it (run_model_uri; none
    while no run is going or the model is not resolved yet); the CronJob with the model resolved now
    (model_uri_now; withheld while there is none)."""
    out = Rendered(notes=owner_note(owner))
    if spec.runtime.preset != "custom":
        out.objects.append(render_template(
            "configmap.yaml.j2",
            metadata=metadata(owner, scorer_configmap_name(owner.name), COMPONENT),
            data={SCORER_FILE: SCORER_SOURCE.read_text()},
        ))
    if run is not None and run_model_uri is not None:
        out.objects.append(render_template(
            "job.yaml.j2",
            metadata=metadata(owner, job_name(owner.name, run), COMPONENT,
                              extra_labels={RUN_LABEL: str(run), TRIGGER_LABEL: "spec"},
                              annotations={RUN_SPEC_HASH_ANNOTATION: run_spec_hash(spec),
                                           MODEL_URI_ANNOTATION: run_model_uri, **lineage_annotation(run_lineage)}),
            job_spec=job_spec(owner, spec, config, run_model_uri, run, bool(spec.suspend)),
        ))
        out.notes.append(f"run {run} writes {run_output_uri(spec, run)}part-<i>.parquet for shards 0..{(spec.shards or 1) - 1}")
    if spec.schedule and model_uri_now is not None:
        job_meta = metadata(owner, "", COMPONENT, extra_labels={TRIGGER_LABEL: "schedule"},
                            annotations={RUN_SPEC_HASH_ANNOTATION: run_spec_hash(spec),
                                         MODEL_URI_ANNOTATION: model_uri_now, **lineage_annotation(lineage_now)})
        job_meta.pop("name")
        job_meta.pop("namespace")
        job_meta.pop("ownerReferences", None)
        out.objects.append(render_template(
            "batch_cronjob.yaml.j2",
            metadata=metadata(owner, cronjob_name(owner.name), COMPONENT),
            schedule=spec.schedule,
            suspend=bool(spec.suspend),
            job_labels=job_meta["labels"],
            job_spec=job_spec(owner, spec, config, model_uri_now, None, suspend=True),
            job_annotations=job_meta["annotations"],
        ))
        out.notes.append("scheduled runs: the CronJob's Jobs start suspended; the operator numbers each as the next "
                         "run and unsuspends it once the previous run finished")
    elif spec.schedule:
        out.notes.append("CronJob withheld: the model is not resolved yet")
    return out
