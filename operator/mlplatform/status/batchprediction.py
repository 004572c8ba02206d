"""BatchPrediction runs: which model a run pins, where a run stands (from its Indexed Job and its shards'
termination messages), and the resulting status."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from ..api.batchprediction import BATCH_RUN_HISTORY_LIMIT
from ..labels import JOB_COMPLETION_INDEX_LABEL, JOB_UID_LABEL
from .conditions import Cond, kstatus, true_condition
from .dependencies import ModelResolution
from .pods import failed_pod_message, first_problem

FINISHED = ("Succeeded", "Failed", "Superseded")


def resolve_from_model_deployment(name: str, deployment: dict | None) -> tuple[ModelResolution, dict | None]:
    """fromModelDeployment: the model it serves now (status.modelUri), and where that came from."""
    if deployment is None:
        return ModelResolution(None, None, Cond("ModelResolved", False, "WaitingForModelDeployment",
                                                f'ModelDeployment "{name}" does not exist yet')), None
    status = deployment.get("status") or {}
    uri = status.get("modelUri")
    if not uri:
        return ModelResolution(None, None, Cond("ModelResolved", False, "WaitingForModelDeployment",
                                                f"ModelDeployment {name} serves no model yet")), None
    training_job = ((deployment.get("spec") or {}).get("model") or {}).get("fromTrainingJob")
    run = status.get("trainingJobRun")
    lineage = {"modelDeployment": name, "artifactUri": uri}
    if training_job:
        lineage["trainingJob"] = training_job
    if run is not None:
        lineage["run"] = run
    return ModelResolution(uri, run, Cond("ModelResolved", True, "ModelDeploymentServing",
                                          f"the model ModelDeployment {name} serves: {uri}")), lineage


def training_lineage(training_job: str | None, resolution: ModelResolution) -> dict | None:
    if resolution.uri is None:
        return None
    lineage: dict = {"artifactUri": resolution.uri}
    if training_job:
        lineage["trainingJob"] = training_job
    if resolution.run is not None:
        lineage["run"] = resolution.run
    return lineage


# --------------------------------------------------------------------------- shards


def indexes(spec: str | None) -> list[int]:
    """The Job's completedIndexes / failedIndexes, e.g. "0-3,5" -> [0, 1, 2, 3, 5]."""
    out: list[int] = []
    for part in (spec or "").split(","):
        if not part:
            continue
        first, _, last = part.partition("-")
        out += range(int(first), int(last or first) + 1)
    return out


def shard_rows(pods: list[dict], job_uid: str | None) -> dict[int, int]:
    """Rows each succeeded shard reported in its termination message ({"shard": i, "rows": N})."""
    rows: dict[int, int] = {}
    for pod in pods:
        meta = pod.get("metadata") or {}
        status = pod.get("status") or {}
        if status.get("phase") != "Succeeded" or (job_uid and (meta.get("labels") or {}).get(JOB_UID_LABEL) != job_uid):
            continue
        index = (meta.get("annotations") or {}).get(JOB_COMPLETION_INDEX_LABEL) or \
            (meta.get("labels") or {}).get(JOB_COMPLETION_INDEX_LABEL)
        for container in status.get("containerStatuses") or []:
            message = (((container.get("state") or {}).get("terminated")) or {}).get("message")
            try:
                value = json.loads(message or "")
            except ValueError:
                continue
            if isinstance(value, dict) and isinstance(value.get("rows"), int) and not isinstance(value["rows"], bool):
                shard = value.get("shard") if isinstance(value.get("shard"), int) else index
                if shard is not None:
                    rows[int(shard)] = value["rows"]
    return rows


# --------------------------------------------------------------------------- one run


@dataclass(frozen=True)
class BatchRunState:
    phase: str
    reason: str
    message: str
    total: int
    succeeded: int = 0
    failed: int = 0
    rows: int = 0
    start_time: str | None = None
    completion_time: str | None = None


def _failed_shards_message(job: dict, pods: list[dict], failed: list[int]) -> str:
    condition = true_condition(job, "Failed") or {}
    if failed:
        shards = ", ".join(map(str, failed))
        what = f"shard {shards} failed" if len(failed) == 1 else f"shards {shards} failed"
        index_pods = [p for p in pods if ((p.get("metadata") or {}).get("annotations") or {})
                      .get(JOB_COMPLETION_INDEX_LABEL) == str(failed[0])]
        detail = failed_pod_message(index_pods)
        retries = ((job.get("spec") or {}).get("backoffLimitPerIndex"))
        after = f" after {retries + 1} attempts" if isinstance(retries, int) else ""
        return f"{what}{after}" + (f"; {detail}" if detail else "") + \
            (f" ({condition.get('reason')})" if condition.get("reason") else "")
    detail = failed_pod_message(pods)
    message = condition.get("message") or "the run's Job failed"
    return f"{message}; {detail}" if detail else message


def run_state(job: dict | None, pods: list[dict], total: int, suspended: bool, record: dict | None,
              events_by_pod: dict | None = None) -> BatchRunState:
    """Where the run stands. record: the run's status record (counts and rows so far, a finished phase)."""
    record = record or {}
    kept_rows = record.get("rowsScored") or 0
    if job is None:
        if record.get("phase") in FINISHED:
            shards = record.get("shards") or {}
            return BatchRunState(record["phase"], record.get("reason", ""), record.get("message", ""), total,
                                 shards.get("succeeded", 0), shards.get("failed", 0), kept_rows,
                                 record.get("startTime"), record.get("completionTime"))
        return BatchRunState("Pending", "Creating", "the run's Job is being created", total, rows=kept_rows)
    status = job.get("status") or {}
    uid = (job.get("metadata") or {}).get("uid")
    done = indexes(status.get("completedIndexes"))
    failed = indexes(status.get("failedIndexes"))
    rows = max(kept_rows, sum(shard_rows(pods, uid).values()))
    counts = dict(total=total, succeeded=len(done), failed=len(failed), rows=rows, start_time=status.get("startTime"))
    if (complete := true_condition(job, "Complete")) is not None:
        return BatchRunState("Succeeded", "Completed", f"{len(done)}/{total} shards scored, {rows} rows", **counts,
                             completion_time=status.get("completionTime") or complete.get("lastTransitionTime"))
    if (failed_condition := true_condition(job, "Failed")) is not None:
        return BatchRunState("Failed", "ShardFailed" if failed else (failed_condition.get("reason") or "JobFailed"),
                             _failed_shards_message(job, pods, failed), **counts,
                             completion_time=failed_condition.get("lastTransitionTime"))
    if suspended or (job.get("spec") or {}).get("suspend"):
        return BatchRunState("Suspended", "Suspended", "spec.suspend is true", **counts)
    active = status.get("active", 0)
    if active or done:
        return BatchRunState("Running", "ShardsRunning",
                             f"{len(done)}/{total} shards scored, {active} running, {rows} rows", **counts)
    problem = first_problem(pods, events_by_pod)
    if problem:
        return BatchRunState("Pending", problem.reason, problem.message, **counts)
    return BatchRunState("Pending", "ShardsStarting", f"0/{total} shards scored", **counts)


# --------------------------------------------------------------------------- the report


@dataclass(frozen=True)
class NewRun:
    """A run started by this reconcile: by the spec (its Job rendered now) or by the schedule (a CronJob's Job)."""
    run: int
    job: str
    trigger: str
    generation: int
    model_uri: str
    lineage: dict | None
    output_uri: str


@dataclass
class BatchReport:
    status: dict
    phase: str
    conditions: list[Cond] = field(default_factory=list)


def start_run(runs: list[dict], new: NewRun) -> list[dict]:
    """The runs with `new` appended and every earlier unfinished run superseded."""
    out = [dict(r) for r in runs]
    for record in out:
        if record.get("phase") not in FINISHED:
            record.update(phase="Superseded", reason="NewRun", message=f"superseded by run {new.run} ({new.trigger})")
    record = {"run": new.run, "job": new.job, "trigger": new.trigger, "generation": new.generation,
              "modelUri": new.model_uri, "outputUri": new.output_uri, "phase": "Pending"}
    if new.lineage:
        record["lineage"] = new.lineage
    return out + [record]


def batch_report(previous: dict, runs: list[dict], run: int | None, spec_hash: str | None,
                 state: BatchRunState | None, resolution: ModelResolution) -> BatchReport:
    """Status and conditions from the runs (the current one's record updated with `state`) and the model resolved
    now (what a run waits for while none could start)."""
    runs = [dict(r) for r in runs]
    record = next((r for r in runs if r.get("run") == run), None)
    if record is not None and state is not None:
        record.update({k: v for k, v in {
            "phase": state.phase, "reason": state.reason, "message": state.message,
            "shards": {"total": state.total, "succeeded": state.succeeded, "failed": state.failed},
            "rowsScored": state.rows, "startTime": state.start_time, "completionTime": state.completion_time,
        }.items() if v is not None})
    status: dict = {"run": run, "runSpecHash": spec_hash, "runs": runs[-BATCH_RUN_HISTORY_LIMIT:] or None}
    model_resolved = resolution.condition
    if record is None or state is None:
        waiting = Cond("Ready", False, model_resolved.reason, model_resolved.message)
        stalled = Cond("Stalled", True, model_resolved.reason, model_resolved.message) if resolution.stalled else None
        return BatchReport({k: v for k, v in status.items() if v is not None}, "Pending",
                           kstatus(waiting, converging=True, stalled=stalled) + [model_resolved])
    status.update({
        "shards": record["shards"],
        "shardSummary": f"{state.succeeded}/{state.total}",
        "rowsScored": state.rows,
        "modelUri": record.get("modelUri"),
        "lineage": record.get("lineage"),
        "outputUri": record.get("outputUri"),
        "startTime": state.start_time,
        "completionTime": state.completion_time,
    })
    phase = state.phase
    stalled = None
    if phase == "Succeeded":
        ready = Cond("Ready", True, "Succeeded",
                     f"run {run} scored {state.rows} rows in {state.succeeded} shards into {record.get('outputUri')}")
    elif phase == "Suspended":
        ready = Cond("Ready", True, "Suspended", f"run {run} is held: {state.message}")
    else:
        ready = Cond("Ready", False, state.reason, f"run {run}: {state.message}")
        if phase == "Failed":
            stalled = Cond("Stalled", True, state.reason, f"run {run}: {state.message}")
    # The pinned model is what the run scores with: ModelResolved tells of the model resolved now (for the next run).
    conditions = kstatus(ready, converging=phase in ("Pending", "Running"), stalled=stalled) + [model_resolved]
    return BatchReport({k: v for k, v in status.items() if v is not None}, phase, conditions)
