"""TrainingJob: a training run, single-pod or distributed, on CPU or GPU."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .common import (
    ApiModel,
    CommonStatus,
    ContainerBlock,
    FeatureRefs,
    Resources,
    Rule,
    Scheduling,
    field,
    required,
)

OUTPUT_URI_PATTERN = r"^((s3|gs|oci)://.+|pvc://[a-z0-9]([-a-z0-9]*[a-z0-9])?(/.*)?)$"
# Editing any other spec field starts a new run.
FIELDS_THAT_DO_NOT_START_A_RUN = ("suspend", "ttlSecondsAfterFinished", "queueName")
RUN_HISTORY_LIMIT = 10


class Distribution(ApiModel):
    framework: Literal["pytorch", "jax", "none"] | None = field("pytorch (torchrun env), jax, or none; default pytorch.")
    procs_per_worker: int | None = field("Processes per worker pod; default gpu.count, else 1.", ge=1, le=64)
    port: int | None = field("Rendezvous port on worker 0 (default 29500).", ge=1, le=65535)


class Checkpoint(ApiModel):
    volume_claim_name: str = required("PersistentVolumeClaim holding checkpoints; it outlives runs, so training resumes.",
                                      pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    mount_path: str | None = field("Where the claim is mounted (default /checkpoints); env CHECKPOINT_DIR.", pattern=r"^/.*")


class Output(ApiModel):
    uri: str = required("Where runs write the model (s3://, gs://, oci://, pvc://); each run writes to <uri>/run-<n>/, "
                        "passed as OUTPUT_URI and reported as artifactUri on success.", pattern=OUTPUT_URI_PATTERN)


class TrainingJobSpec(ContainerBlock):
    image: str = required("Container image of the training code.", min_length=1)
    service_account_name: str | None = field("ServiceAccount of the worker pods.", max_length=253)
    resources: Resources | None = field("Per worker: cpu, memory, gpu.")
    scheduling: Scheduling | None = field("Node selection, tolerations and priority.")
    workers: int | None = field("Worker pods (default 1); more than one means distributed.", ge=1, le=1024)
    distribution: Distribution | None = field("How workers find each other.")
    backoff_limit: int | None = field("Whole-run retries before the run fails (default 0).", ge=0, le=100)
    active_deadline_seconds: int | None = field("Wall-clock limit of a run.", ge=1)
    ttl_seconds_after_finished: int | None = field("Finished runs' Jobs are removed after this many seconds.", ge=0)
    queue_name: str | None = field("Kueue LocalQueue: the Job carries kueue.x-k8s.io/queue-name and starts suspended for Kueue.",
                                   pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)
    checkpoint: Checkpoint | None = field("Checkpoint volume, mounted in every worker; env CHECKPOINT_DIR.")
    output: Output | None = field("Where the model is written; env OUTPUT_URI.")
    features: FeatureRefs | None = field("FeatureViews the job reads; env FEATURES_<NAME>_REPO points at each Feast repo config.")
    suspend: bool | None = field("Stop the current run's pods and hold; phase Suspended.")


class RunRecord(ApiModel):
    run: int = required("Run number.")
    generation: int | None = field("metadata.generation the run was started for.")
    job: str | None = field("Name of the run's Job.")
    phase: str | None = field("Pending Running Succeeded Failed Superseded.")
    start_time: str | None = field("When the run started.", json_schema_extra={"format": "date-time"})
    completion_time: str | None = field("When the run finished.", json_schema_extra={"format": "date-time"})
    artifact_uri: str | None = field("Where the run wrote its model (succeeded runs).")
    reason: str | None = field("Why the run ended as it did.")
    message: str | None = field("Detail of the reason.")
    metrics: dict[str, float] | None = field(
        "Numbers the worker of index 0 wrote to its termination message as a JSON object (e.g. auc, loss).")


class WorkerCounts(ApiModel):
    active: int | None = field("Worker pods running.")
    succeeded: int | None = field("Worker pods that succeeded.")
    failed: int | None = field("Worker pods that failed.")


class TrainingJobStatus(CommonStatus):
    run: int | None = field("Current run number.")
    run_generation: int | None = field("metadata.generation the current run was started for.")
    run_spec_hash: str | None = field("Hash of the spec fields that start a new run when edited.")
    runs: list[RunRecord] | None = field(f"The last {RUN_HISTORY_LIMIT} runs.")
    workers: WorkerCounts | None = field("Worker pods of the current run.")
    start_time: str | None = field("When the current run started.", json_schema_extra={"format": "date-time"})
    completion_time: str | None = field("When the current run finished.", json_schema_extra={"format": "date-time"})
    artifact_uri: str | None = field("Model written by the latest succeeded run.")
    artifact_run: int | None = field("Run that wrote artifactUri.")
    metrics: dict[str, float] | None = field("Metrics of the latest succeeded run.")


class TrainingJob(ApiModel):
    """A training run, single-pod or distributed, on CPU or GPU: an Indexed Job per run, numbered; editing
    the spec starts a new run; status records each run and the artifact of the latest successful one."""

    spec: TrainingJobSpec = Field(..., description="Desired state of the TrainingJob.")
