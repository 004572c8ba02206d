"""What a ModelDeployment waits for: its TrainingJob's artifact and its FeatureViews."""

from __future__ import annotations

from dataclasses import dataclass

from .conditions import Cond, true_condition


@dataclass(frozen=True)
class ModelResolution:
    uri: str | None
    run: int | None
    condition: Cond
    stalled: bool = False


def _ready(body: dict | None) -> bool:
    return true_condition(body, "Ready") is not None


def resolve_model(uri: str | None, training_job_name: str | None, training_job: dict | None) -> ModelResolution:
    if uri:
        return ModelResolution(uri, None, Cond("ModelResolved", True, "ModelUri", uri))
    if training_job is None:
        return ModelResolution(None, None, Cond("ModelResolved", False, "WaitingForTrainingJob",
                                                f'TrainingJob "{training_job_name}" does not exist yet'))
    status = training_job.get("status") or {}
    if status.get("artifactUri"):
        run = status.get("artifactRun")
        return ModelResolution(status["artifactUri"], run, Cond(
            "ModelResolved", True, "TrainingJobSucceeded",
            f"run {run} of TrainingJob {training_job_name}: {status['artifactUri']}"))
    phase = status.get("phase")
    if phase == "Failed":
        return ModelResolution(None, None, Cond(
            "ModelResolved", False, "TrainingJobFailed",
            f"run {status.get('run')} of TrainingJob {training_job_name} failed and no run has succeeded; "
            f"fix the TrainingJob or set model.uri"), stalled=True)
    if phase == "Succeeded":
        return ModelResolution(None, None, Cond(
            "ModelResolved", False, "TrainingJobHasNoOutput",
            f"TrainingJob {training_job_name} succeeded but has no spec.output, so there is no artifact to deploy"),
            stalled=True)
    waiting = (f"run {status['run']} of TrainingJob {training_job_name} is {phase or 'starting'}" if status.get("run")
               else f"TrainingJob {training_job_name} has not started a run yet")
    return ModelResolution(None, None, Cond("ModelResolved", False, "WaitingForTrainingJob", waiting))


def features_condition(names: list[str], views: dict[str, dict | None]) -> Cond:
    if not names:
        return Cond("FeaturesReady", True, "NoFeatures", "reads no FeatureViews")
    missing = [n for n in names if views.get(n) is None]
    if missing:
        return Cond("FeaturesReady", False, "FeatureViewNotFound", f"FeatureView not found: {', '.join(missing)}")
    not_ready = [n for n in names if not _ready(views[n])]
    if not_ready:
        return Cond("FeaturesReady", False, "FeatureViewNotReady", f"FeatureView not Ready: {', '.join(not_ready)}")
    return Cond("FeaturesReady", True, "FeatureViewsReady", f"{len(names)} FeatureView(s) Ready")


def freshness_condition(names: list[str], views: dict[str, dict | None]) -> Cond | None:
    """FeaturesFresh: every FeatureView read is Fresh (its own Fresh condition); None when it reads none."""
    if not names:
        return None
    stale = []
    for name in names:
        fresh = next((c for c in ((views.get(name) or {}).get("status") or {}).get("conditions") or []
                      if c.get("type") == "Fresh"), None)
        if fresh is None or fresh.get("status") != "True":
            detail = (fresh or {}).get("message") or "no Fresh condition yet"
            stale.append(f"{name} ({detail})")
    if stale:
        return Cond("FeaturesFresh", False, "FeaturesStale", f"FeatureView not Fresh: {'; '.join(stale)}")
    return Cond("FeaturesFresh", True, "FeaturesFresh", f"{len(names)} FeatureView(s) Fresh")
