"""TrainingJob -> an Indexed Job per run, and a headless Service for worker DNS when distributed."""

from __future__ import annotations

from typing import Any

from ..api.trainingjob import (
    DISRUPTION_RULE,
    EXIT_CODE_RULE,
    FIELDS_THAT_DO_NOT_START_A_RUN,
    TrainingJobSpec,
    restart_policy,
)
from ..config import OperatorConfig
from ..labels import GENERATION_LABEL, KUEUE_QUEUE_LABEL, RUN_LABEL, RUN_SPEC_HASH_ANNOTATION, short_hash
from .common import (
    CONTAINER_SECURITY_CONTEXT,
    POD_SECURITY_CONTEXT,
    Owner,
    Rendered,
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
)
from .feast import FEAST_REPO_MOUNT
from .featureview import repo_configmap_name
from .shm import apply_shared_memory, shared_memory_size

COMPONENT = "trainer"
COMPLETION_INDEX = "metadata.annotations['batch.kubernetes.io/job-completion-index']"
DEFAULT_RENDEZVOUS_PORT = 29500
CHECKPOINT_VOLUME = "checkpoint"


def job_name(name: str, run: int) -> str:
    return f"{name}-{run}"


def workers_service_name(name: str) -> str:
    return f"{name}-workers"


# What earlier operators hashed: every field but these, failurePolicy and activeDeadlineSeconds included.
_NOT_HASHED_BEFORE = ("suspend", "ttlSecondsAfterFinished", "queueName")


def run_spec_hash(spec: TrainingJobSpec) -> str:
    """The run's identity: a hash of the fields whose edit starts a new run (all but
    FIELDS_THAT_DO_NOT_START_A_RUN)."""
    return _hash_without(spec, FIELDS_THAT_DO_NOT_START_A_RUN)


def earlier_run_spec_hash(spec: TrainingJobSpec) -> str:
    """The same run's identity as an operator that still hashed failurePolicy and activeDeadlineSeconds wrote it
    in status.runSpecHash: a run it started goes on after an upgrade."""
    return _hash_without(spec, _NOT_HASHED_BEFORE)


def _hash_without(spec: TrainingJobSpec, fields: tuple[str, ...]) -> str:
    data = spec.to_api()
    for key in fields:
        data.pop(key, None)
    return short_hash(data)


def artifact_uri(spec: TrainingJobSpec, run: int) -> str | None:
    if spec.output is None:
        return None
    return f"{spec.output.uri.rstrip('/')}/run-{run}/"


def procs_per_worker(spec: TrainingJobSpec) -> int:
    if spec.distribution and spec.distribution.procs_per_worker:
        return spec.distribution.procs_per_worker
    if spec.resources and spec.resources.gpu:
        return spec.resources.gpu.count
    return 1


def job_backoff_limit(spec: TrainingJobSpec) -> int:
    """Pod retries inside one attempt: spec.backoffLimit for a single worker; 0 for a distributed run, whose
    first failing worker must end the attempt (whole-run restarts are the operator's, failurePolicy)."""
    if (spec.workers or 1) > 1:
        return 0
    return spec.backoff_limit or 0


def pod_failure_policy(spec: TrainingJobSpec) -> list[dict[str, Any]]:
    """The Job's podFailurePolicy rules (restartPolicy Never, as the API requires). A disrupted pod
    (DisruptionTarget) fails the attempt at once, as does a non-retryable exit code; the Job's Failed
    condition names the rule's index, which tells the operator which of the two it was."""
    policy = restart_policy(spec)
    rules: list[dict[str, Any]] = []
    for rule in policy.pod_failure_rules():
        if rule == DISRUPTION_RULE:
            rules.append({"action": "FailJob", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]})
        elif rule == EXIT_CODE_RULE:
            rules.append({"action": "FailJob", "onExitCodes": {"containerName": "trainer", "operator": "In",
                                                               "values": list(policy.non_retryable_exit_codes)}})
    return rules


def as_the_live_job_allows(job: dict[str, Any], live: dict[str, Any]) -> dict[str, Any]:
    """The intent for a run's Job that exists already, keeping what may not change on it as the live Job has it,
    so that what may change (ttlSecondsAfterFinished, activeDeadlineSeconds, the queue of a Job still waiting)
    is applied instead of the whole apply being refused: Kubernetes keeps a Job's podFailurePolicy as created,
    and Kueue keeps the queue of a Job it admitted (not suspended)."""
    spec = {k: v for k, v in job["spec"].items() if k != "podFailurePolicy"}
    if "podFailurePolicy" in live.get("spec", {}):
        spec["podFailurePolicy"] = live["spec"]["podFailurePolicy"]
    labels = dict(job["metadata"].get("labels") or {})
    if not live.get("spec", {}).get("suspend"):
        labels.pop(KUEUE_QUEUE_LABEL, None)
        if KUEUE_QUEUE_LABEL in (live["metadata"].get("labels") or {}):
            labels[KUEUE_QUEUE_LABEL] = live["metadata"]["labels"][KUEUE_QUEUE_LABEL]
    return {**job, "metadata": {**job["metadata"], "labels": labels}, "spec": spec}


def _index_env(name: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": COMPLETION_INDEX}}}


def _distribution_env(owner: Owner, spec: TrainingJobSpec, run: int) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """Plain variables, and variables read from the pod's completion index (the node rank)."""
    workers = spec.workers or 1
    framework = (spec.distribution.framework if spec.distribution else None) or "pytorch"
    port = (spec.distribution.port if spec.distribution else None) or DEFAULT_RENDEZVOUS_PORT
    procs = procs_per_worker(spec)
    # Indexed Job pods are named <job>-<index>; with the headless Service as subdomain they resolve.
    master = f"{job_name(owner.name, run)}-0.{workers_service_name(owner.name)}" if workers > 1 else "localhost"
    if framework == "pytorch":
        plain = {
            "MASTER_ADDR": master, "MASTER_PORT": str(port),
            "WORLD_SIZE": str(workers * procs), "NNODES": str(workers), "LOCAL_WORLD_SIZE": str(procs),
            "PET_MASTER_ADDR": master, "PET_MASTER_PORT": str(port),
            "PET_NNODES": str(workers), "PET_NPROC_PER_NODE": str(procs),
        }
        return plain, [_index_env("RANK"), _index_env("NODE_RANK"), _index_env("PET_NODE_RANK")]
    if framework == "jax":
        plain = {"JAX_COORDINATOR_ADDRESS": f"{master}:{port}", "JAX_NUM_PROCESSES": str(workers),
                 "JAX_LOCAL_DEVICE_COUNT": str(procs)}
        return plain, [_index_env("JAX_PROCESS_ID")]
    return {"NUM_WORKERS": str(workers)}, [_index_env("WORKER_INDEX")]


def _pod_spec(owner: Owner, spec: TrainingJobSpec, config: OperatorConfig, run: int) -> dict[str, Any]:
    plain_env, index_env = _distribution_env(owner, spec, run)
    operator_env = {"MLPLATFORM_RUN": str(run), **plain_env}
    volumes: list[dict[str, Any]] = []
    mounts: list[dict[str, Any]] = []
    if spec.checkpoint:
        mount_path = spec.checkpoint.mount_path or "/checkpoints"
        operator_env["CHECKPOINT_DIR"] = mount_path
        volumes.append({"name": CHECKPOINT_VOLUME, "persistentVolumeClaim": {"claimName": spec.checkpoint.volume_claim_name}})
        mounts.append({"name": CHECKPOINT_VOLUME, "mountPath": mount_path})
    if spec.output:
        operator_env["OUTPUT_URI"] = artifact_uri(spec, run)
    for view in spec.features or []:
        volume = f"features-{view}"[:63]
        path = f"{FEAST_REPO_MOUNT}/{view}"
        operator_env[f"FEATURES_{env_name_part(view)}_REPO"] = path
        volumes.append({"name": volume, "configMap": {"name": repo_configmap_name(view)}})
        mounts.append({"name": volume, "mountPath": path, "readOnly": True})
    user_names = {e.name for e in spec.env or []}
    env = env_list(spec.env, operator_env) + [e for e in index_env if e["name"] not in user_names]
    container: dict[str, Any] = {
        "name": "trainer",
        "image": spec.image,
        "env": env,
        "resources": container_resources(spec.resources),
        "securityContext": CONTAINER_SECURITY_CONTEXT,
    }
    if spec.command:
        container["command"] = spec.command
    if spec.args:
        container["args"] = spec.args
    if spec.env_from:
        container["envFrom"] = env_from_list(spec.env_from)
    if mounts:
        container["volumeMounts"] = mounts
    if (spec.workers or 1) > 1:
        framework = (spec.distribution.framework if spec.distribution else None) or "pytorch"
        if framework != "none":
            port = (spec.distribution.port if spec.distribution else None) or DEFAULT_RENDEZVOUS_PORT
            container["ports"] = [{"name": "rendezvous", "containerPort": port, "protocol": "TCP"}]
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "securityContext": POD_SECURITY_CONTEXT,
        "containers": [container],
        **pod_scheduling(spec.resources, spec.scheduling, config),
    }
    if volumes:
        pod["volumes"] = volumes
    if (spec.workers or 1) > 1:
        pod["subdomain"] = workers_service_name(owner.name)
    if spec.service_account_name:
        pod["serviceAccountName"] = spec.service_account_name
    apply_shared_memory(pod, shared_memory_size(spec.resources, config), ("trainer",))
    return pod


def render_training_job(owner: Owner, spec: TrainingJobSpec, config: OperatorConfig, run: int,
                        job_exists: bool = False) -> Rendered:
    """The children of run `run`. job_exists: once the Job exists and Kueue manages it, its
    spec.suspend belongs to Kueue and is left out of the intent."""
    out = Rendered(notes=owner_note(owner))
    workers = spec.workers or 1
    run_labels = {RUN_LABEL: str(run)}
    job_labels = {KUEUE_QUEUE_LABEL: spec.queue_name, **run_labels} if spec.queue_name else run_labels
    pod_meta_labels = {**metadata(owner, "", COMPONENT)["labels"], **run_labels}
    job_spec: dict[str, Any] = {
        "completionMode": "Indexed",
        "completions": workers,
        "parallelism": workers,
        "backoffLimit": job_backoff_limit(spec),
        "ttlSecondsAfterFinished": (spec.ttl_seconds_after_finished if spec.ttl_seconds_after_finished is not None
                                    else config.defaults.training_ttl_seconds_after_finished),
        "template": {
            "metadata": {"labels": pod_meta_labels,
                         "annotations": pod_annotations(owner, config,
                                                        {GENERATION_LABEL: str(owner.generation or 0)})},
            "spec": _pod_spec(owner, spec, config, run),
        },
    }
    if rules := pod_failure_policy(spec):
        job_spec["podFailurePolicy"] = {"rules": rules}
    if spec.active_deadline_seconds:
        job_spec["activeDeadlineSeconds"] = spec.active_deadline_seconds
    if spec.suspend:
        job_spec["suspend"] = True
    elif spec.queue_name:
        if not job_exists:
            job_spec["suspend"] = True  # Kueue admits the workload by unsuspending it
    else:
        job_spec["suspend"] = False
    out.objects.append(render_template(
        "job.yaml.j2",
        metadata=metadata(owner, job_name(owner.name, run), COMPONENT, extra_labels=job_labels,
                          annotations={RUN_SPEC_HASH_ANNOTATION: run_spec_hash(spec)}),
        job_spec=job_spec,
    ))
    if workers > 1:
        out.objects.append(render_template(
            "service.yaml.j2",
            metadata=metadata(owner, workers_service_name(owner.name), COMPONENT),
            headless=True,
            selector=selector(owner, COMPONENT),
            ports=[{"name": "rendezvous", "port": (spec.distribution.port if spec.distribution and spec.distribution.port
                                                   else DEFAULT_RENDEZVOUS_PORT), "protocol": "TCP"}],
        ))
    if spec.output:
        out.notes.append(f"run {run} writes to OUTPUT_URI {artifact_uri(spec, run)}; it becomes status.artifactUri "
                         f"when the run succeeds")
    return out
