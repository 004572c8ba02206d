"""TrainingJob: number runs, render the current run, stop superseded ones, report."""

from __future__ import annotations

from ..cache import ResourceKey
from ..kube import KubeError
from ..render.trainingjob import COMPONENT, RUN_LABEL, artifact_uri, job_name, render_training_job, run_spec_hash
from ..status.run_metrics import record_metrics
from ..status.trainingjob import QueueState, current_record, plan_run, run_state, training_job_report
from .base import (
    Context,
    apply_children,
    live_child,
    log,
    job_finished,
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
                    current is not None and ctx.cache.child(key, "Job", job_name(owner.name, current)) is not None)
    name = job_name(owner.name, plan.run)
    # Whether the Job exists decides whether our intent carries suspend: confirmed, never guessed.
    live_job = live_child(ctx, key, "batch/v1", "Job", name) if plan.render_job else ctx.cache.child(key, "Job", name)
    objects = (render_training_job(owner, spec, ctx.config, plan.run, job_exists=live_job is not None).objects
               if plan.render_job else [])
    # Kueue owns a queued Job's spec.suspend: our intent carries it only when creating the Job.
    queued = bool(spec.queue_name) and not spec.suspend and plan.render_job
    if queued and live_job is not None and owns_spec_field(live_job, "suspend"):
        ctx.kube.hand_over("batch/v1", "Job", owner.namespace, name, {"suspend": True}, force=False)
    # Superseded runs still going are stopped; finished runs stay until their TTL removes them.
    apply_children(ctx, key, owner, objects, keep=lambda child: child["kind"] == "Job" and job_finished(child))
    if queued and live_job is None:
        ctx.kube.hand_over("batch/v1", "Job", owner.namespace, name, {"suspend": True}, force=False)

    job = ctx.cache.child(key, "Job", name)
    pods = pods_of(ctx, key, COMPONENT, {RUN_LABEL: str(plan.run)})
    queue = None
    if spec.queue_name and job is not None and (job.get("spec") or {}).get("suspend") and not spec.suspend:
        installed = ctx.kube.kueue_installed()
        queue = QueueState(installed, installed and ctx.kube.local_queue_exists(owner.namespace, spec.queue_name))
    state = run_state(job, pods, spec.workers or 1, bool(spec.suspend), spec.queue_name, queue,
                      None if plan.new_run else current_record(previous),
                      warning_events_if_needed(ctx, owner.namespace, pods))
    report = training_job_report(previous, plan, spec_hash, owner.generation or 1, state,
                                 artifact_uri(spec, plan.run), name)
    metrics_problem = record_metrics(report.status, previous, plan.run, pods)
    ctx.metrics.set_training_job(owner.namespace, owner.name, runs=report.status["runs"])
    if write_status(ctx, KIND, body, report.status, report.status["phase"], report.conditions) and metrics_problem:
        try:
            ctx.kube.post_event(body, "Warning", "MetricsUnreadable", metrics_problem)
        except KubeError as err:  # the run's status is written; an Event that cannot be posted is only logged
            log.warning("could not post event on %s %s/%s: %s", KIND, owner.namespace, owner.name, err)
