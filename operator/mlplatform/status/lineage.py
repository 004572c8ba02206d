"""ModelDeployment.status.lineage and the FeatureContract condition: what serves, what it was made from, and
whether the FeatureViews it reads still have the schema its run was trained on. Pure functions of the
TrainingJob's run records (status.runs[].inputs), the rollout status and the FeatureViews as cached."""

from __future__ import annotations

from .conditions import Cond

RUNNING_ROLLOUT = ("Progressing", "Paused", "Promoting")
CONTRACT = "FeatureContract"


def current_schemas(views: dict[str, dict | None]) -> dict[str, str | None]:
    """Each FeatureView's status.schemaHash now (None: missing, or not reported yet)."""
    return {name: ((view or {}).get("status") or {}).get("schemaHash") for name, view in views.items()}


def _same_uri(a: str | None, b: str | None) -> bool:
    return bool(a) and bool(b) and a.rstrip("/") == b.rstrip("/")


def run_record(training_job: dict | None, uri: str | None) -> dict | None:
    """The run whose artifact is this URI (each run writes its own <output.uri>/run-<n>/)."""
    runs = ((training_job or {}).get("status") or {}).get("runs") or []
    return next((r for r in reversed(runs) if _same_uri(r.get("artifactUri"), uri)), None)


def run_lineage(training_job_name: str | None, training_job: dict | None, uri: str | None) -> dict | None:
    """{trainingJob, run, artifactUri, image, features} of the model at uri; a fixed model.uri: its URI only."""
    if not uri:
        return None
    if not training_job_name:
        return {"artifactUri": uri}
    record = run_record(training_job, uri) or {}
    inputs = record.get("inputs") or {}
    features = [{k: f[k] for k in ("name", "schemaHash", "materializedUntil") if f.get(k) is not None}
                for f in inputs.get("features") or []]
    out = {"trainingJob": training_job_name, "run": record.get("run"), "artifactUri": uri,
           "image": inputs.get("image"), "features": features or None}
    return {k: v for k, v in out.items() if v is not None}


def lineage_status(training_job_name: str | None, training_job: dict | None, resolved_uri: str | None,
                   rollout: dict | None) -> dict | None:
    """What the stable Deployment serves (while a canary runs: the rollout's stable model, else the resolved
    one) and, while a canary runs, what the canary serves under `canary`."""
    running = (rollout or {}).get("phase") in RUNNING_ROLLOUT
    stable_uri = (rollout or {}).get("stableModelUri") if running else resolved_uri
    lineage = run_lineage(training_job_name, training_job, stable_uri or resolved_uri)
    if lineage is not None and running and (rollout or {}).get("canaryModelUri"):
        canary = run_lineage(training_job_name, training_job, rollout["canaryModelUri"])
        if canary is not None:
            lineage["canary"] = canary
    return lineage


def schema_change(view: str, trained: dict, current_view: dict) -> str:
    """In words, what changed in a FeatureView since the run read it: the features whose type changed, that
    were removed or added (from the run's recorded featureTypes and the view's spec now); the hashes only when
    no feature differs (an entity or the source changed) or the run recorded no types."""
    before = trained.get("featureTypes") or {}
    now = {f.get("name"): f.get("dtype") for f in ((current_view.get("spec") or {}).get("features") or [])}
    changes = []
    if before:
        changes += [f"feature {n} {before[n]} -> {now[n]}" for n in before if n in now and before[n] != now[n]]
        changes += [f"feature {n} removed" for n in before if n not in now]
        changes += [f"feature {n} {now[n]} added" for n in now if n not in before]
    if not changes:
        changes = [f"schema {trained.get('schemaHash')} -> {(current_view.get('status') or {}).get('schemaHash')}"]
    return f"{view}: {', '.join(changes)}"


def feature_contract(names: list[str], views: dict[str, dict | None], training_job: dict | None,
                     serving_uri: str | None) -> Cond | None:
    """FeatureContract: True when every FeatureView the ModelDeployment reads has the schemaHash the serving run
    was trained on; False (SchemaChanged) naming the views and features that changed; Unknown when it cannot be
    told (no serving run, a run without recorded inputs, a view without status.schemaHash). None: reads no
    FeatureViews."""
    if not names:
        return None
    record = run_record(training_job, serving_uri) if training_job is not None else None
    if record is None or "inputs" not in record:
        return Cond(CONTRACT, None, "NoTrainingRecord",
                    "the served model has no run record with inputs (model.uri, nothing served yet, or a run "
                    "started before inputs were recorded)")
    trained = {f.get("name"): f for f in (record["inputs"].get("features") or [])}
    changed, unknown = [], []
    for name in names:
        view = views.get(name)
        current = ((view or {}).get("status") or {}).get("schemaHash")
        read = trained.get(name)
        if view is None or not current or read is None or not read.get("schemaHash"):
            unknown.append(name)
        elif read["schemaHash"] != current:
            changed.append(schema_change(name, read, view))
    run = record.get("run")
    if changed:
        return Cond(CONTRACT, False, "SchemaChanged", f"{'; '.join(changed)} since run {run} was trained")
    if unknown:
        return Cond(CONTRACT, None, "SchemaUnknown",
                    f"schema of {', '.join(unknown)} not known (no status.schemaHash, or run {run} did not read it)")
    return Cond(CONTRACT, True, "SchemaMatches",
                f"{len(names)} FeatureView(s) have the schema run {run} was trained on")
