"""TrainingJob runs: when a new run starts, what phase a run is in, and the resulting status."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..api.trainingjob import RUN_HISTORY_LIMIT
from .conditions import Cond, kstatus, true_condition
from .kueue import mirrored_conditions, waiting_message
from .pods import failed_pod_message, first_problem
from .restarts import Decision

FINISHED = ("Succeeded", "Failed", "Superseded")


@dataclass(frozen=True)
class RunPlan:
    run: int
    new_run: bool
    render_job: bool


def plan_run(status: dict, spec_hash: str, current_job_exists: bool, earlier_hash: str | None = None) -> RunPlan:
    """A new run on create and whenever the run-defining spec changes (its hash, the run's identity, differs
    from status.runSpecHash; earlier_hash: the same spec's identity as an earlier operator computed it); a
    finished run's Job, once removed by its TTL, is not created again."""
    run = status.get("run")
    if run is None:
        return RunPlan(1, True, True)
    if status.get("runSpecHash") not in (spec_hash, earlier_hash):
        return RunPlan(run + 1, True, True)
    record = current_record(status)
    finished = record is not None and record.get("phase") in FINISHED
    return RunPlan(run, False, current_job_exists or not finished)


def run_generation(status: dict, plan: RunPlan, generation: int) -> int:
    """The metadata.generation the run was started for (its pods carry it): an edit that starts no run
    changes the generation, not the run's pod template, which Kubernetes does not let change on a Job."""
    if plan.new_run:
        return generation
    return (current_record(status) or {}).get("generation") or generation


def current_record(status: dict) -> dict | None:
    return next((r for r in status.get("runs") or [] if r.get("run") == status.get("run")), None)


@dataclass(frozen=True)
class QueueState:
    """Kueue, when spec.queueName is set: installed? the LocalQueue present?"""

    kueue_installed: bool
    local_queue_exists: bool
    workload: dict | None = None  # Kueue's Workload of the run's Job, once Kueue made it


@dataclass(frozen=True)
class RunState:
    phase: str
    reason: str
    message: str
    start_time: str | None = None
    completion_time: str | None = None
    active: int = 0
    succeeded: int = 0
    failed: int = 0


def run_state(job: dict | None, pods: list[dict], workers: int, suspended: bool, queue_name: str | None,
              queue: QueueState | None, previous: dict | None, events_by_pod: dict | None = None,
              attempt: Decision | None = None, attempt_handled: bool = False) -> RunState:
    """attempt: the decision just taken about the Job's failure (restart or fail, status/restarts.py);
    attempt_handled: that failure was acted on by an earlier reconcile, whose record stands."""
    if job is not None and attempt_handled and previous:
        return RunState(previous.get("phase", "Pending"), previous.get("reason", ""), previous.get("message", ""),
                        previous.get("startTime"), previous.get("completionTime"))
    if attempt is not None and attempt.restart:
        return RunState("Pending", "Restarting", attempt.message, (previous or {}).get("startTime"))
    if job is None:
        if previous and previous.get("phase") in FINISHED:
            return RunState(previous["phase"], previous.get("reason", ""), previous.get("message", ""),
                            previous.get("startTime"), previous.get("completionTime"))
        return RunState("Pending", "Creating", "the run's Job is being created")
    status = job.get("status") or {}
    counts = dict(active=status.get("active", 0), succeeded=status.get("succeeded", 0), failed=status.get("failed", 0))
    times = dict(start_time=status.get("startTime"), completion_time=status.get("completionTime"))
    if (done := true_condition(job, "Complete")) is not None:
        return RunState("Succeeded", "Completed", f"{workers}/{workers} workers succeeded", **{
            **times, "completion_time": status.get("completionTime") or done.get("lastTransitionTime")}, **counts)
    if attempt is not None:  # failed, and not restarted
        failed = true_condition(job, "Failed") or {}
        detail = failed_pod_message(pods) if attempt.reason != "NonRetryableExitCode" else ""
        return RunState("Failed", attempt.reason, f"{attempt.message}; {detail}" if detail else attempt.message,
                        times["start_time"], failed.get("lastTransitionTime"), **counts)
    if (failed := true_condition(job, "Failed")) is not None:
        detail = failed_pod_message(pods)
        message = failed.get("message") or "the Job failed"
        return RunState("Failed", failed.get("reason") or "JobFailed", f"{message}; {detail}" if detail else message,
                        times["start_time"], failed.get("lastTransitionTime"), **counts)
    if suspended:
        return RunState("Suspended", "Suspended", "spec.suspend is true", **times, **counts)
    if queue_name and (job.get("spec") or {}).get("suspend"):
        if queue is not None and not queue.kueue_installed:
            return RunState("Pending", "KueueNotInstalled",
                            f"spec.queueName is {queue_name!r} but Kueue is not installed in this cluster (no "
                            f"kueue.x-k8s.io API): the Job stays suspended; install Kueue or remove spec.queueName",
                            **times, **counts)
        if queue is not None and not queue.local_queue_exists:
            return RunState("Pending", "LocalQueueNotFound",
                            f"Kueue LocalQueue {queue_name!r} does not exist in this namespace", **times, **counts)
        return RunState("Pending", "WaitingForAdmission",
                        waiting_message(queue_name, queue.workload if queue is not None else None), **times, **counts)
    ready = status.get("ready", 0)
    if counts["active"] and ready >= min(workers, counts["active"]) and counts["active"] + counts["succeeded"] >= workers:
        return RunState("Running", "WorkersRunning", f"{counts['active']}/{workers} workers running", **times, **counts)
    problem = first_problem(pods, events_by_pod)
    if problem:
        return RunState("Pending", problem.reason, problem.message, **times, **counts)
    return RunState("Pending", "WorkersStarting", f"{ready}/{workers} workers ready", **times, **counts)


@dataclass
class TrainingJobReport:
    status: dict
    conditions: list[Cond] = field(default_factory=list)


def training_job_report(previous: dict, plan: RunPlan, spec_hash: str, generation: int, state: RunState,
                        artifact_uri: str | None, job_name: str, record_updates: dict | None = None,
                        workload: dict | None = None) -> TrainingJobReport:
    """status.run/runs/workers/artifactUri and the conditions, from the previous status and the run's state.
    record_updates: restarts/disruptions and what was acted on (status/restarts.py); workload: Kueue's
    Workload of a queued run, whose conditions are mirrored."""
    runs = [dict(r) for r in previous.get("runs") or []]
    if plan.new_run:
        for record in runs:
            if record.get("phase") not in FINISHED:
                record.update(phase="Superseded", reason="SpecChanged",
                              message=f"superseded by run {plan.run} (spec generation {generation})")
        runs.append({"run": plan.run, "generation": generation, "job": job_name})
    record = next(r for r in runs if r["run"] == plan.run)
    record.update(record_updates or {})
    record.update({k: v for k, v in {
        "phase": state.phase, "reason": state.reason, "message": state.message,
        "startTime": state.start_time, "completionTime": state.completion_time}.items() if v is not None})
    status = {
        "run": plan.run,
        "runGeneration": record.get("generation", generation),
        "runSpecHash": spec_hash,
        "phase": state.phase,
        "workers": {"active": state.active, "succeeded": state.succeeded, "failed": state.failed},
        "startTime": state.start_time,
        "completionTime": state.completion_time,
        "artifactUri": previous.get("artifactUri"),
        "artifactRun": previous.get("artifactRun"),
    }
    if state.phase == "Succeeded" and artifact_uri:
        record["artifactUri"] = artifact_uri
        status["artifactUri"], status["artifactRun"] = artifact_uri, plan.run
    status["runs"] = runs[-RUN_HISTORY_LIMIT:]

    phase = state.phase
    running = phase in ("Pending", "Running")
    stalled = Cond("Stalled", True, state.reason, state.message) if phase == "Failed" or state.reason == "KueueNotInstalled" \
        else None
    if phase == "Succeeded":
        ready = Cond("Ready", True, "Succeeded", f"run {plan.run} succeeded" + (f": {artifact_uri}" if artifact_uri else ""))
    elif phase == "Suspended":
        # A held run is a state asked for, and reached: Ready (reason Suspended), so that kstatus (Flux) reads
        # Current. Nothing reads a TrainingJob's Ready as "has an artifact": ModelDeployments follow
        # status.artifactUri and phase.
        ready = Cond("Ready", True, "Suspended", f"run {plan.run} is held: {state.message}")
    else:
        ready = Cond("Ready", False, state.reason, state.message)
    conditions = kstatus(ready, converging=running, stalled=stalled) + [
        Cond("Running", phase == "Running", state.reason if phase == "Running" else phase,
             state.message if phase == "Running" else ""),
        Cond("Succeeded", phase == "Succeeded", "Completed" if phase == "Succeeded" else phase,
             state.message if phase == "Succeeded" else ""),
        Cond("Failed", phase == "Failed", state.reason if phase == "Failed" else "NotFailed",
             state.message if phase == "Failed" else ""),
    ] + mirrored_conditions(workload)
    return TrainingJobReport({k: v for k, v in status.items() if v is not None}, conditions)


def waiting_for_features(previous: dict, missing: list[str]) -> tuple[dict, str, list[Cond]]:
    """(status fields, phase, conditions) of a TrainingJob whose next run waits for FeatureViews that do not exist:
    Ready False naming them, the run not started; earlier runs' status is kept."""
    message = f"FeatureView not found: {', '.join(missing)} (spec.features); the run starts once they exist"
    fields = {k: v for k, v in previous.items() if k not in ("observedGeneration", "phase", "conditions")}
    kept = [Cond(c["type"], {"True": True, "False": False}.get(c.get("status")), c.get("reason") or "", c.get("message") or "")
            for c in previous.get("conditions") or []
            if c.get("type") not in ("Ready", "Reconciling", "Stalled", "FeaturesReady")]
    conditions = kstatus(Cond("Ready", False, "WaitingForFeatures", message), converging=True) + kept + [
        Cond("FeaturesReady", False, "FeatureViewNotFound", message)]
    return fields, "Pending", conditions
