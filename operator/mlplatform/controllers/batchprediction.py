"""BatchPrediction: one reconcile in explicit steps.

    resolve  the model as a ModelDeployment resolves it (uri, or a TrainingJob's promoted run), or what a
             ModelDeployment serves now
    runs     a spec run starts when the run-defining spec differs from the last spec run's (creation included),
             pinning the model resolved now; a CronJob's Job (created suspended) becomes the next run once the
             current run has finished: the operator writes its run number into the pod template's annotation and
             unsuspends it
    apply    the scorer ConfigMap, the current spec run's Job, the CronJob; finished Jobs stay for their TTL
    report   shards and rows of the current run, from its Job and its pods' termination messages
"""

from __future__ import annotations

import json

from ..api.batchprediction import BatchPredictionSpec
from ..labels import JOB_UID_LABEL, MODEL_URI_ANNOTATION, RUN_LABEL, RUN_SPEC_HASH_ANNOTATION
from ..render.batchprediction import (
    COMPONENT,
    LINEAGE_ANNOTATION,
    RUN_ANNOTATION,
    TRIGGER_LABEL,
    job_name,
    render_batch_prediction,
    run_output_uri,
    run_spec_hash,
)
from ..render.common import Owner, RenderError
from ..runtime.cache import ResourceKey
from ..status.batchprediction import (
    FINISHED,
    NewRun,
    batch_report,
    resolve_from_model_deployment,
    run_state,
    start_run,
    training_lineage,
)
from ..status.conditions import Cond
from ..status.dependencies import ModelResolution
from ..status.promotion import resolve_training_model
from .base import (
    Context,
    apply_children,
    controlled_by,
    job_finished,
    log,
    owner_of,
    pods_of,
    report_invalid,
    typed_spec,
    warning_events_if_needed,
    write_status,
    wrote,
)

KIND = "BatchPrediction"


def resolve(ctx: Context, namespace: str, spec: BatchPredictionSpec) -> tuple[ModelResolution, dict | None]:
    model = spec.model
    if model.from_model_deployment:
        return resolve_from_model_deployment(
            model.from_model_deployment, ctx.cache.resource(("ModelDeployment", namespace, model.from_model_deployment)))
    training_job = (ctx.cache.resource(("TrainingJob", namespace, model.from_training_job))
                    if model.from_training_job else None)
    resolution = resolve_training_model(model.uri, model.from_training_job, model.promotion, training_job)
    return resolution, training_lineage(model.from_training_job, resolution)


def _annotations(job: dict) -> dict:
    return (job.get("metadata") or {}).get("annotations") or {}


def _labels(job: dict) -> dict:
    return (job.get("metadata") or {}).get("labels") or {}


def scheduled_jobs(ctx: Context, key: ResourceKey, uid: str) -> list[dict]:
    """The CronJob's Jobs (ours by label, controlled by the CronJob), oldest first."""
    return sorted((j for j in ctx.cache.children(key, "Job")
                   if _labels(j).get(TRIGGER_LABEL) == "schedule" and not controlled_by(j, uid)),
                  key=lambda j: (j["metadata"].get("creationTimestamp") or "", j["metadata"]["name"]))


def adopt(ctx: Context, key: ResourceKey, owner: Owner, job: dict, run: int) -> None:
    """Number a CronJob's suspended Job as run `run` (its pods read it from their annotation) and start it."""
    name = job["metadata"]["name"]
    response = ctx.kube.apply({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "namespace": owner.namespace, "labels": {RUN_LABEL: str(run)}},
        "spec": {"suspend": False, "template": {"metadata": {"annotations": {RUN_ANNOTATION: str(run)}}}},
    })
    wrote(ctx, key, "Job", response, "batch/v1")
    log.info("BatchPrediction %s/%s: scheduled Job %s is run %d", owner.namespace, owner.name, name, run)


def plan_runs(ctx: Context, key: ResourceKey, owner: Owner, spec: BatchPredictionSpec, previous: dict,
              spec_hash: str, resolution: ModelResolution, lineage: dict | None) -> tuple[list[dict], int | None, str | None]:
    """(runs, current run, runSpecHash) after starting whatever run is due."""
    runs = [dict(r) for r in previous.get("runs") or []]
    run, last_hash = previous.get("run"), previous.get("runSpecHash")
    if last_hash != spec_hash and resolution.uri is not None:
        for record in runs:  # a scheduled run still going is stopped: the CronJob's Job is not pruned as ours
            if record.get("trigger") == "schedule" and record.get("phase") not in FINISHED and record.get("job"):
                ctx.kube.delete("batch/v1", "Job", owner.namespace, record["job"])
        run = (run or 0) + 1
        runs = start_run(runs, NewRun(run, job_name(owner.name, run), "spec", owner.generation or 1, resolution.uri,
                                      lineage, run_output_uri(spec, run)))
        return runs, run, spec_hash
    known = {r.get("job") for r in runs}
    for job in scheduled_jobs(ctx, key, owner.uid):
        labelled = _labels(job).get(RUN_LABEL)
        if labelled is not None and job["metadata"]["name"] not in known and int(labelled) > (run or 0):
            # adopted by a reconcile whose status write was lost: recorded now
            run = int(labelled)
            runs = start_run(runs, _scheduled_run(owner, spec, job, run))
            continue
        if labelled is not None or job_finished(job):
            continue
        current = next((r for r in runs if r.get("run") == run), None)
        if current is not None and current.get("phase") not in FINISHED:
            break  # the scheduled Job waits, suspended, for the current run; the CronJob (Forbid) skips ticks meanwhile
        if _annotations(job).get(RUN_SPEC_HASH_ANNOTATION) != spec_hash or spec.suspend:
            if not spec.suspend:  # made from an earlier spec's template: not a run of this spec
                ctx.kube.delete("batch/v1", "Job", owner.namespace, job["metadata"]["name"])
            continue
        run = (run or 0) + 1
        adopt(ctx, key, owner, job, run)
        runs = start_run(runs, _scheduled_run(owner, spec, job, run))
    return runs, run, last_hash


def _scheduled_run(owner: Owner, spec: BatchPredictionSpec, job: dict, run: int) -> NewRun:
    annotations = _annotations(job)
    try:
        lineage = json.loads(annotations.get(LINEAGE_ANNOTATION) or "null")
    except ValueError:
        lineage = None
    return NewRun(run, job["metadata"]["name"], "schedule", owner.generation or 1,
                  annotations.get(MODEL_URI_ANNOTATION, ""), lineage, run_output_uri(spec, run))


def reconcile(ctx: Context, key: ResourceKey, body: dict) -> None:
    owner = owner_of(KIND, body)
    spec = typed_spec(body)
    previous = body.get("status") or {}
    spec_hash = run_spec_hash(spec)
    resolution, lineage = resolve(ctx, owner.namespace, spec)
    runs, run, recorded_hash = plan_runs(ctx, key, owner, spec, previous, spec_hash, resolution, lineage)
    record = next((r for r in runs if r.get("run") == run), None)
    spec_run = record is not None and record.get("trigger") == "spec"
    job_of_run = ctx.cache.child(key, "Job", record["job"]) if record else None
    render_job = spec_run and (job_of_run is not None or record.get("phase") not in FINISHED)
    try:
        rendered = render_batch_prediction(owner, spec, ctx.config, run if render_job else None,
                                           record.get("modelUri") if render_job else None, resolution.uri,
                                           record.get("lineage") if render_job else None, lineage)
    except RenderError as err:
        report_invalid(ctx, KIND, body, str(err))
        return
    apply_children(ctx, key, owner, rendered.objects,
                   keep=lambda child: child["kind"] == "Job" and job_finished(child))
    job = ctx.cache.child(key, "Job", record["job"]) if record else None
    job_uid = ((job or {}).get("metadata") or {}).get("uid")
    pods = [p for p in pods_of(ctx, key, COMPONENT)
            if job_uid is not None and _labels(p).get(JOB_UID_LABEL) == job_uid]
    total = ((job or {}).get("spec") or {}).get("completions") or spec.shards or 1  # the run's, not an edit's
    state = (run_state(job, pods, total, bool(spec.suspend), record,
                       warning_events_if_needed(ctx, owner.namespace, pods)) if record else None)
    report = batch_report(previous, runs, run, recorded_hash, state, resolution)
    conditions = report.conditions
    if record is not None and resolution.uri is None and record.get("trigger") == "spec" and \
            previous.get("runSpecHash") not in (None, spec_hash):
        # an edit waits for its model: the Ready of the earlier run stands, and says what the edit waits for
        conditions = [Cond("Reconciling", True, resolution.condition.reason,
                           f"the edited spec waits for its model: {resolution.condition.message}")
                      if c.type == "Reconciling" else c for c in conditions]
    write_status(ctx, KIND, body, report.status, report.phase, conditions)


def dependents(ctx: Context, kind: str, namespace: str, name: str) -> list[ResourceKey]:
    """BatchPredictions that score with this TrainingJob's runs or this ModelDeployment's model."""
    field = {"TrainingJob": "fromTrainingJob", "ModelDeployment": "fromModelDeployment"}[kind]
    return [(KIND, namespace, body["metadata"]["name"]) for body in ctx.cache.resources(KIND, namespace)
            if ((body.get("spec") or {}).get("model") or {}).get(field) == name]
