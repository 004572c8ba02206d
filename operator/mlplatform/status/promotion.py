"""model.promotion: which successful TrainingJob run may be deployed, judged on its recorded metrics."""

from __future__ import annotations

from .conditions import Cond
from .dependencies import ModelResolution, resolve_model


def _fmt(value: float) -> str:
    return f"{value:g}"


def missed_bound(metrics: dict | None, bounds: list) -> str | None:
    """The first bound the metrics miss, in words; None when every bound is met. No metrics: every bound fails."""
    for bound in bounds:
        value = (metrics or {}).get(bound.name)
        if value is None:
            return f"{bound.name} not recorded"
        if bound.min is not None and value < bound.min:
            return f"{bound.name} {_fmt(value)} < min {_fmt(bound.min)}"
        if bound.max is not None and value > bound.max:
            return f"{bound.name} {_fmt(value)} > max {_fmt(bound.max)}"
    return None


def schema_mismatch(record: dict, schemas: dict[str, str | None] | None) -> str | None:
    """The first FeatureView the ModelDeployment reads now (name -> its current status.schemaHash) whose schema
    differs from the one the run recorded in its inputs, in words. A view without a current hash, or one the run
    did not record, cannot be told: it does not block."""
    trained = {f.get("name"): f.get("schemaHash") for f in ((record.get("inputs") or {}).get("features") or [])}
    for view, current in (schemas or {}).items():
        if current and trained.get(view) and trained[view] != current:
            return f"trained on FeatureView {view} schema {trained[view]}, which now has schema {current}"
    return None


def resolve_promoted(training_job_name: str, training_job: dict | None, bounds: list,
                     schemas: dict[str, str | None] | None = None, serving_run: int | None = None) -> ModelResolution:
    """The newest succeeded run (with an artifact) whose metrics meet every bound and whose FeatureView schemas
    are those the ModelDeployment reads now (schemas: view -> current status.schemaHash); newer succeeded runs
    that miss are named in ModelResolved's message. None qualifies yet: NoQualifyingRun. serving_run: the run
    served now, which a schema change does not take away (FeatureContract False says it); it only keeps other
    runs on the old schema from being promoted."""
    waiting = resolve_model(None, training_job_name, training_job)
    runs = ((training_job or {}).get("status") or {}).get("runs") or []
    succeeded = [r for r in runs if r.get("phase") == "Succeeded" and r.get("artifactUri")]
    if not succeeded:
        return waiting
    skipped: list[str] = []
    for record in sorted(succeeded, key=lambda r: r["run"], reverse=True):
        miss = ((schema_mismatch(record, schemas) if record["run"] != serving_run else None)
                or missed_bound(record.get("metrics"), bounds))
        if miss is not None:
            skipped.append(f"run {record['run']} skipped: {miss}")
            continue
        note = f"; {'; '.join(skipped)}" if skipped else ""
        return ModelResolution(record["artifactUri"], record["run"], Cond(
            "ModelResolved", True, "TrainingJobSucceeded",
            f"run {record['run']} of TrainingJob {training_job_name} meets every promotion bound: "
            f"{record['artifactUri']}{note}"))
    # Stalled once the TrainingJob has finished its current run: only a new run (a TrainingJob edit) or other
    # bounds can change the verdict. While a run is going, it may still qualify.
    finished = ((training_job or {}).get("status") or {}).get("phase") in ("Succeeded", "Failed")
    return ModelResolution(None, None, Cond(
        "ModelResolved", False, "NoQualifyingRun",
        f"no succeeded run of TrainingJob {training_job_name} meets model.promotion: {'; '.join(skipped)}"),
        stalled=finished)


def resolve_training_model(uri: str | None, training_job_name: str | None, promotion, training_job: dict | None,
                           schemas: dict[str, str | None] | None = None, serving_run: int | None = None
                           ) -> ModelResolution:
    """A model block (uri, or fromTrainingJob with an optional promotion) resolved against its TrainingJob as
    the cache holds it: the one resolution ModelDeployment and BatchPrediction share. schemas, serving_run: a
    ModelDeployment's FeatureViews' current schema hashes and the run it serves (resolve_promoted)."""
    if promotion is not None and training_job_name:
        return resolve_promoted(training_job_name, training_job, promotion.metrics, schemas, serving_run)
    return resolve_model(uri, training_job_name, training_job)
