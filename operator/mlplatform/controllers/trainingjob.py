"""TrainingJob: number runs, render the current run, stop superseded ones, report."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone

from ..api.trainingjob import TrainingJobSpec, restart_policy
from ..labels import JOB_UID_LABEL
from ..render.common import Owner
from ..render.trainingjob import (
    COMPONENT,
    RUN_LABEL,
    artifact_uri,
    as_the_live_job_allows,
    earlier_run_spec_hash,
    job_name,
    render_training_job,
    run_spec_hash,
)
from ..runtime.cache import ResourceKey
from ..runtime.kube import KubeError
from ..status.kueue import workload_condition
from ..status.restarts import Decision, failed_attempt, kueue_eviction, record_decision
from ..status.run_inputs import record_run_inputs
from ..status.run_metrics import record_metrics, turned_succeeded, worker_zero_selector
from ..status.trainingjob import (
    QueueState,
    RunPlan,
    current_record,
    plan_run,
    run_generation,
    run_state,
    training_job_report,
    waiting_for_features,
)
from ..triggers import FINISHED, decide_trigger, parse_timestamp
from .base import (
    Context,
    apply_children,
    job_finished,
    live_child,
    log,
    owner_of,
    owns_spec_field,
    pods_of,
    typed_spec,
    warning_events_if_needed,
    write_status,
)

KIND = "TrainingJob"


def reconcile(ctx: Context, key: ResourceKey, body: dict) -> None:
    owner = owner_of(KIND, body)
    spec = typed_spec(body)
    previous = body.get("status") or {}
    spec_hash = run_spec_hash(spec)
    current = previous.get("run")
    plan = plan_run(previous, spec_hash,
                    current is not None and ctx.cache.child(key, "Job", job_name(owner.name, current)) is not None,
                    earlier_hash=earlier_run_spec_hash(spec))
    now = datetime.now(timezone.utc)
    read_views = views_read(ctx, owner.namespace, spec)
    # A trigger starts no run on top of a new one, nor while the TrainingJob is held.
    triggered = None if plan.new_run or spec.suspend else decide_trigger(
        spec.trigger, previous, read_views, now, parse_timestamp(body["metadata"].get("creationTimestamp")))
    if triggered is not None and triggered.start:
        plan = RunPlan(plan.run + 1, True, True)
    name = job_name(owner.name, plan.run)
    # Whether the Job exists decides whether our intent carries suspend: confirmed, never guessed.
    live_job = live_child(ctx, key, "batch/v1", "Job", name) if plan.render_job else ctx.cache.child(key, "Job", name)
    if plan.render_job and live_job is None and (waiting := missing_features(ctx, owner.namespace, spec)):
        # The run's pods would mount each view's Feast repo: a missing view would fail them at start. Wait instead.
        write_status(ctx, KIND, body, *waiting_for_features(previous, waiting))
        return
    objects = render_run(owner, spec, ctx, previous, plan, live_job) if plan.render_job else []
    # Kueue owns a queued Job's spec.suspend: our intent carries it only when creating the Job.
    queued = bool(spec.queue_name) and not spec.suspend and plan.render_job
    if queued and live_job is not None and owns_spec_field(live_job, "suspend"):
        ctx.kube.hand_over("batch/v1", "Job", owner.namespace, name, {"suspend": True}, force=False)
    # Superseded runs still going are stopped; finished runs stay until their TTL removes them.
    apply_children(ctx, key, owner, objects, keep=lambda child: child["kind"] == "Job" and job_finished(child))
    if queued and live_job is None:
        ctx.kube.hand_over("batch/v1", "Job", owner.namespace, name, {"suspend": True}, force=False)

    job = ctx.cache.child(key, "Job", name)
    job_uid = (job or {}).get("metadata", {}).get("uid")
    # Pods of this attempt only: a restarted run's previous pods may still be going away.
    pods = [p for p in pods_of(ctx, key, COMPONENT, {RUN_LABEL: str(plan.run)})
            if job_uid is None or (p["metadata"].get("labels") or {}).get(JOB_UID_LABEL) in (None, job_uid)]
    record = {} if plan.new_run else (current_record(previous) or {})
    policy = restart_policy(spec)
    workload, queue = None, None
    if spec.queue_name and job is not None and not spec.suspend:
        installed = ctx.kube.kueue_installed()
        workload = ctx.kube.workload_of_job(owner.namespace, job_uid) if installed else None
        if (job.get("spec") or {}).get("suspend"):
            queue = QueueState(installed, installed and ctx.kube.local_queue_exists(owner.namespace, spec.queue_name),
                               workload)
    handled = job is not None and record.get("handledJobUid") == job_uid and record.get("phase") is not None
    attempt, updates = None, {}
    if job is not None and not handled and not spec.suspend:
        attempt = failed_attempt(job, policy, record)
        if attempt is not None:
            updates = {**record_decision(record, attempt), "handledJobUid": job_uid}
            if attempt.restart:  # the whole group again: this Job goes, the next reconcile creates it anew
                ctx.kube.delete("batch/v1", "Job", owner.namespace, name, uid=job_uid)
            announce(ctx, body, attempt, plan.run)
    eviction = workload_condition(workload, "Evicted")
    if (attempt is None and eviction is not None and eviction.get("status") == "True"
            and eviction.get("lastTransitionTime") != record.get("handledEviction")):
        decision = kueue_eviction(eviction, policy, record)
        updates = {**record_decision(record, decision), "handledEviction": eviction.get("lastTransitionTime")}
        announce(ctx, body, decision, plan.run)
        if not decision.restart:
            ctx.kube.delete("batch/v1", "Job", owner.namespace, name, uid=job_uid)
            attempt = decision
    state = run_state(job, pods, spec.workers or 1, bool(spec.suspend), spec.queue_name, queue,
                      None if plan.new_run else current_record(previous),
                      warning_events_if_needed(ctx, owner.namespace, pods), attempt, handled)
    report = training_job_report(previous, plan, spec_hash, owner.generation or 1, state,
                                 artifact_uri(spec, plan.run), name, updates, workload)
    record_run_inputs(report.status, plan.run, plan.new_run, (triggered and triggered.start) or "spec", read_views,
                      spec.image, pods, now)
    if triggered is not None and triggered.condition is not None:
        report.conditions.append(triggered.condition)
    if triggered is not None and triggered.wake_at is not None:
        ctx.queue.add(key, delay=max((triggered.wake_at - now).total_seconds(), 0) + 0.5)
    if run_finished_now(triggered, report.status):
        # The trigger was decided on the status before this reconcile, which records the run's end: decide again
        # on what it records (the echo of our own status write enqueues nothing).
        ctx.queue.add(key)
    fresh_pods = (worker_zero_pods(ctx, owner.namespace, job_uid)
                  if job_uid is not None and turned_succeeded(report.status, previous, plan.run) else [])
    metrics_problem = record_metrics(report.status, previous, plan.run, fresh_pods)
    ctx.metrics.set_training_job(owner.namespace, owner.name, runs=report.status["runs"])
    written = write_status(ctx, KIND, body, report.status, report.status["phase"], report.conditions)
    if written and triggered is not None and triggered.start:
        post_event(ctx, body, "Normal", "TriggeredRunStarted",
                   f"run {plan.run} started by {triggered.start}: {triggered.condition.message}")
    if written and metrics_problem:
        try:
            ctx.kube.post_event(body, "Warning", "MetricsUnreadable", metrics_problem)
        except KubeError as err:  # the run's status is written; an Event that cannot be posted is only logged
            log.warning("could not post event on %s %s/%s: %s", KIND, owner.namespace, owner.name, err)


def run_finished_now(triggered, status: dict) -> bool:
    """A trigger waited for the current run (RunInProgress) and this reconcile's status records that run finished."""
    waited = triggered is not None and triggered.condition is not None and triggered.condition.reason == "RunInProgress"
    runs = status.get("runs") or []
    return waited and bool(runs) and runs[-1].get("phase") in FINISHED


def missing_features(ctx: Context, namespace: str, spec: TrainingJobSpec) -> list[str]:
    return [name for name in spec.features or [] if ctx.cache.resource(("FeatureView", namespace, name)) is None]


def dependents(ctx: Context, namespace: str, name: str) -> list[ResourceKey]:
    """TrainingJobs that read this FeatureView: its features name it (one waiting for it starts its run once it
    exists) or its trigger watches it (spec.trigger.afterMaterialization)."""
    def reads(spec: dict) -> bool:
        return name in (spec.get("features") or []) or name in ((spec.get("trigger") or {}).get("afterMaterialization") or [])
    return [(KIND, namespace, b["metadata"]["name"]) for b in ctx.cache.resources(KIND, namespace) if reads(b.get("spec") or {})]


def views_read(ctx: Context, namespace: str, spec: TrainingJobSpec) -> dict[str, dict | None]:
    """The FeatureViews a run reads (spec.features) and those its trigger watches, as cached."""
    names = [*(spec.features or []), *((spec.trigger and spec.trigger.after_materialization) or [])]
    return {n: ctx.cache.resource(("FeatureView", namespace, n)) for n in dict.fromkeys(names)}


def render_run(owner: Owner, spec: TrainingJobSpec, ctx: Context, previous: dict, plan: RunPlan,
               live_job: dict | None) -> list[dict]:
    """The run's children as started: its pods carry the generation the run began with, and a Job that exists
    keeps what Kubernetes does not let change, so that an edit that starts no run reaches the running Job."""
    run_owner = replace(owner, generation=run_generation(previous, plan, owner.generation or 1))
    objects = render_training_job(run_owner, spec, ctx.config, plan.run, job_exists=live_job is not None).objects
    if live_job is None:
        return objects
    return [as_the_live_job_allows(o, live_job) if o["kind"] == "Job" else o for o in objects]


def worker_zero_pods(ctx: Context, namespace: str, job_uid: str) -> list[dict]:
    """Worker 0's pods read from the API server: the pod cache, filled by its own watch, may not have seen the
    pod succeed when the Job's Complete arrives first."""
    return ctx.kube.list_pods(namespace, worker_zero_selector(job_uid))


def announce(ctx: Context, body: dict, decision: Decision, run: int) -> None:
    """One Event per restart (Normal when it is not counted) and per run failed by the policy."""
    if decision.restart:
        kind, reason = ("Warning" if decision.counted else "Normal"), "RunRestarted"
        message = f"run {run}: {decision.message}"
    else:
        return  # the Failed condition's flip announces it (status/events.py)
    try:
        ctx.kube.post_event(body, kind, reason, message)
    except KubeError as err:
        log.warning("could not post event on %s/%s: %s", body["metadata"]["namespace"], body["metadata"]["name"], err)


def post_event(ctx: Context, body: dict, kind: str, reason: str, message: str) -> None:
    try:
        ctx.kube.post_event(body, kind, reason, message)
    except KubeError as err:
        log.warning("could not post event on %s/%s: %s", body["metadata"]["namespace"], body["metadata"]["name"], err)


