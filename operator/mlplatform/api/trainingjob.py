"""TrainingJob: a training run, single-pod or distributed, on CPU or GPU."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError
from pydantic import Field

from .common import (
    CRON_PATTERN,
    DNS_LABEL_PATTERN,
    ApiModel,
    CommonStatus,
    ContainerBlock,
    EnvFromSource,
    EnvVar,
    FeatureRefs,
    Resources,
    Rule,
    Scheduling,
    field,
    required,
)

OUTPUT_URI_PATTERN = r"^((s3|gs|oci)://.+|pvc://[a-z0-9]([-a-z0-9]*[a-z0-9])?(/.*)?)$"
# What a run is made of is its identity (status.runSpecHash): editing any spec field but these starts a new
# run. These are how a run is held, queued, limited, cleaned up and restarted: they apply to the current run
# (each field's description says how far Kubernetes lets a running Job change) and start none.
FIELDS_THAT_DO_NOT_START_A_RUN = ("suspend", "ttlSecondsAfterFinished", "queueName", "activeDeadlineSeconds",
                                  "failurePolicy", "trigger")
STARTS_A_RUN = " Editing it starts a new run (a run still going is stopped and recorded as Superseded)."


def run_field(description: str, **kwargs):
    """A field of what the run computes: its description says that an edit starts a new run."""
    return field(description + STARTS_A_RUN, **kwargs)
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


class FailurePolicy(ApiModel):
    """Whole-run restarts. Each attempt of a run is one Indexed Job whose podFailurePolicy ends the attempt at
    the first failing worker (distributed runs: backoffLimit 0, so no worker is ever replaced alone: a static
    torchrun rendezvous cannot take a new member); the operator then deletes that Job and creates it again
    with every worker, same run number, same CHECKPOINT_DIR, and counts the restart in status.runs[].restarts."""

    max_restarts: int | None = field(
        "Whole-run restarts after a worker failure before the run fails: all workers start again together, the run "
        "number stays, status.runs[].restarts counts them (an Event each time). Unlike backoffLimit, which (for a "
        "single-worker run) lets the Job replace the failed pod, a restart re-creates the whole group. "
        "Default: spec.backoffLimit if workers > 1, else 0.", ge=0, le=100)
    restart_on_preemption: bool | None = field(
        "true: a worker whose pod was disrupted (pod condition DisruptionTarget: preemption, eviction, node loss) "
        "or a run evicted or preempted by Kueue restarts the whole run without counting against maxRestarts "
        "(status.runs[].disruptions counts those). false: a disruption counts as a failure. Default: true.")
    non_retryable_exit_codes: list[Annotated[int, Field(ge=1, le=255)]] | None = field(
        "Exit codes of the trainer container that fail the run at once, with no restart; the message names the "
        "worker and the code (a Job podFailurePolicy FailJob rule).",
        max_length=32, json_schema_extra={"x-kubernetes-list-type": "set"})
    rules = (
        Rule(None, "nonRetryableExitCodes: each code once", "nonRetryableExitCodes",  # the API server: list-type set
             lambda s: len(set(s.non_retryable_exit_codes or ())) == len(s.non_retryable_exit_codes or ())),
    )


TIME_ZONE_PATTERN = r"^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*$"
TRIGGERS = ("spec", "schedule", "afterMaterialization")


class Trigger(ApiModel):
    """Runs started without a git change. The decisions are in mlplatform/triggers.py; the spec is never written."""

    schedule: str | None = field(
        "Cron schedule (5 fields or @daily/@hourly/...): a new run at each tick, in timeZone.", pattern=CRON_PATTERN)
    time_zone: str | None = field("IANA time zone of the schedule, e.g. Europe/Dublin (default UTC).",
                                  pattern=TIME_ZONE_PATTERN, max_length=64)
    after_materialization: list[Annotated[str, Field(pattern=DNS_LABEL_PATTERN, max_length=63)]] | None = field(
        "FeatureViews (names in this namespace): a new run once every one of them has materialized past the "
        "watermark (status.materializedUntil) the last run read, and none while one of them is not Fresh.",
        min_length=1, max_length=16, json_schema_extra={"x-kubernetes-list-type": "set"})
    min_interval_seconds: int | None = field(
        "At most one triggered run per this many seconds (counted from the last triggered run's start).", ge=0)
    rules = (
        Rule("has(self.schedule) || has(self.afterMaterialization)",
             "trigger needs schedule or afterMaterialization", None,
             lambda s: s.schedule is not None or s.after_materialization is not None),
        Rule("!has(self.timeZone) || has(self.schedule)", "timeZone needs schedule", "timeZone",
             lambda s: s.time_zone is None or s.schedule is not None),
        Rule(None, "schedule: not a valid cron expression", "schedule",
             lambda s: s.schedule is None or cron_problem(s.schedule) is None),
        Rule(None, "timeZone: not a known IANA time zone", "timeZone",
             lambda s: s.time_zone is None or known_time_zone(s.time_zone)),
    )


CRON_MACROS = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *", "@weekly": "0 0 * * 0",
               "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *"}


def cron_expression(schedule: str) -> str:
    """The five-field form of a schedule (the @ macros spelled out)."""
    return CRON_MACROS.get(schedule.strip(), schedule.strip())


def cron_problem(expression: str) -> str | None:
    """Why a cron expression cannot be evaluated (a field out of range, ...), or None."""
    try:
        CronSim(cron_expression(expression), datetime(2026, 1, 1, tzinfo=timezone.utc))
    except CronSimError as err:
        return str(err)
    return None


def known_time_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


class TrainingJobSpec(ContainerBlock):
    """Each field's description says whether editing it starts a new run (FIELDS_THAT_DO_NOT_START_A_RUN)."""

    command: list[str] | None = run_field("Entrypoint; the image's when absent.")
    args: list[str] | None = run_field("Arguments to the entrypoint.")
    env: list[EnvVar] | None = run_field(
        "Environment variables: name/value, or valueFrom secretKeyRef / configMapKeyRef.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    env_from: list[EnvFromSource] | None = run_field(
        "Whole Secrets or ConfigMaps as environment (secretRef / configMapRef).")
    image: str = required("Container image of the training code." + STARTS_A_RUN, min_length=1)
    service_account_name: str | None = run_field("ServiceAccount of the worker pods.", max_length=253)
    resources: Resources | None = run_field("Per worker: cpu, memory, gpu.")
    scheduling: Scheduling | None = run_field("Node selection, tolerations and priority.")
    workers: int | None = run_field("Worker pods (default 1); more than one means distributed.", ge=1, le=1024)
    distribution: Distribution | None = run_field("How workers find each other.")
    backoff_limit: int | None = run_field(
        "Single-worker runs: pod retries within the run (the Job's backoffLimit: Kubernetes replaces the failed "
        "pod). Distributed runs never replace one worker: there it is the default of failurePolicy.maxRestarts "
        "(whole-run restarts) and the Job's own backoffLimit is 0. Default: 0.", ge=0, le=100)
    active_deadline_seconds: int | None = field(
        "Wall-clock limit of a run, counted by Kubernetes from the start of the run's Job (the Job's "
        "activeDeadlineSeconds): past it the run fails with reason DeadlineExceeded, without a restart. Editing it "
        "starts no run: the running Job takes the new limit at once.", ge=1)
    ttl_seconds_after_finished: int | None = field(
        "Finished runs' Jobs are removed after this many seconds (unset: the operator configuration's "
        "defaults.trainingTtlSecondsAfterFinished). Default: from the operator configuration. Editing it starts "
        "no run: the current run's Job takes it at once (finished or not); the Jobs of earlier runs keep theirs.",
        ge=0)
    queue_name: str | None = field(
        "Kueue LocalQueue: the Job carries kueue.x-k8s.io/queue-name and starts suspended for Kueue. Editing it "
        "starts no run: a run still waiting for admission moves to the new queue; an admitted run keeps the queue "
        "it was admitted in (Kueue does not move a running Job), and the next run uses the new one.",
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)
    failure_policy: FailurePolicy | None = field(
        "Whole-run restarts: how many, whether disruptions count, which exit codes are final. Each attempt of a run "
        "is one Indexed Job with podFailurePolicy FailJob rules (pod condition DisruptionTarget first, then "
        "nonRetryableExitCodes) and, for distributed runs, backoffLimit 0: the first failing worker ends the attempt "
        "for all. Neither an Ignore rule for disruptions nor backoffLimitPerIndex is used: both make the Job replace "
        "one worker alone, which a static torchrun rendezvous cannot take back. The operator then deletes the Job "
        "and creates it again: all workers, same Job name, run number and CHECKPOINT_DIR. Absent: a distributed run "
        "restarts whole spec.backoffLimit times, a disrupted pod counts as a failure, a run evicted by Kueue waits "
        "to be admitted again without counting. Editing it starts no run: maxRestarts, and what a Kueue eviction "
        "means, apply to the current run at once; the Job's podFailurePolicy (restartOnPreemption for a pod's "
        "disruption, nonRetryableExitCodes), which Kubernetes does not let change on a Job, takes the new rules at "
        "the run's next attempt (a restart) or the next run.")
    checkpoint: Checkpoint | None = run_field("Checkpoint volume, mounted in every worker; env CHECKPOINT_DIR.")
    output: Output | None = run_field("Where the model is written; env OUTPUT_URI.")
    features: FeatureRefs | None = run_field(
        "FeatureViews the job reads; env FEATURES_<NAME>_REPO points at each Feast repo config.")
    suspend: bool | None = field(
        "Stop the current run's pods and hold; phase Suspended. Editing it starts no run: false resumes the same "
        "run (its Job is unsuspended).")
    trigger: Trigger | None = field(
        "Start new runs without a git change: on a cron schedule and/or once the listed FeatureViews have "
        "materialized past the last run's watermark. A triggered run is numbered and recorded like an edit's "
        "(status.runs[].trigger says why it started); a trigger waits while the current run is going. Editing it "
        "starts no run.")


class FeatureInput(ApiModel):
    name: str = required("FeatureView name.")
    schema_hash: str | None = field("The FeatureView's status.schemaHash when the run started.")
    materialized_until: str | None = field("The FeatureView's status.materializedUntil (watermark) when the run "
                                           "started.", json_schema_extra={"format": "date-time"})
    feature_types: dict[str, str] | None = field(
        "The FeatureView's features and their types when the run started (to tell which one changed).")


class RunInputs(ApiModel):
    features: list[FeatureInput] | None = field("Each FeatureView the run read (spec.features), as it was then.")
    image: str | None = field("The image the run ran: the pod's digest (containerStatuses imageID) once reported, "
                              "else spec.image.")


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
    restarts: int | None = field("Whole-run restarts of this run counted against failurePolicy.maxRestarts.")
    disruptions: int | None = field("Whole-run restarts after a disruption (preemption, eviction, node loss, "
                                    "Kueue eviction) that did not count against maxRestarts.")
    handled_job_uid: str | None = field("UID of the last failed attempt's Job that the operator acted on "
                                        "(restart or final failure), so that it is acted on once.")
    handled_eviction: str | None = field("lastTransitionTime of the last Kueue eviction acted on.")
    trigger: Literal["spec", "schedule", "afterMaterialization"] | None = field(
        "Why the run started: spec (created or edited), schedule (a cron tick of spec.trigger), "
        "afterMaterialization (the listed FeatureViews materialized past the last run's watermark).")
    triggered_at: str | None = field("When the operator started the run (its schedule and interval clock).",
                                     json_schema_extra={"format": "date-time"})
    inputs: RunInputs | None = field("What the run read: FeatureViews at run start, and the image.")


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


# Indexes of the rules in the Job's podFailurePolicy (render) that the operator reads back from the Job's
# Failed condition ("... matching FailJob rule at index N"): a disruption first, so that a worker killed by
# its eviction is never taken for a non-retryable exit code.
DISRUPTION_RULE = "disruption"
EXIT_CODE_RULE = "exit-code"


@dataclass(frozen=True)
class RestartPolicy:
    """spec.failurePolicy with its defaults filled in (see the field descriptions)."""

    max_restarts: int
    restart_on_preemption: bool
    non_retryable_exit_codes: tuple[int, ...]
    declared: bool = True  # spec.failurePolicy is set (without it, Kueue's evictions are Kueue's business)

    def pod_failure_rules(self) -> list[str]:
        """The rules the Job's podFailurePolicy carries, in order."""
        rules = [DISRUPTION_RULE] if self.restart_on_preemption else []
        return rules + ([EXIT_CODE_RULE] if self.non_retryable_exit_codes else [])


def restart_policy(spec: TrainingJobSpec) -> RestartPolicy:
    workers = spec.workers or 1
    fp = spec.failure_policy
    if fp is None:
        # As before failurePolicy existed: distributed runs restart whole, backoffLimit times.
        return RestartPolicy((spec.backoff_limit or 0) if workers > 1 else 0, False, (), declared=False)
    default_restarts = (spec.backoff_limit or 0) if workers > 1 else 0
    return RestartPolicy(fp.max_restarts if fp.max_restarts is not None else default_restarts,
                         fp.restart_on_preemption is not False, tuple(sorted(set(fp.non_retryable_exit_codes or ()))))
