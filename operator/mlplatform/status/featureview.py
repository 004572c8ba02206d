"""FeatureView status: materialization, freshness and the feature server."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone

from ..labels import BACKFILL_WINDOW_ANNOTATION, MATERIALIZATION_SPEC_HASH_ANNOTATION
from .conditions import Cond, kstatus, now_iso, parse_time, true_condition
from .pods import failed_pod_message, first_problem


@dataclass
class FeatureViewObserved:
    online: bool
    suspended: bool
    spec_hash: str
    max_staleness_seconds: int | None
    materialization_jobs: list[dict]  # the on-change Jobs and the CronJob's, each labelled with the owner
    server: dict | None
    server_desired: int
    server_url: str
    pods: list[dict] = field(default_factory=list)  # feature server pods
    job_pods: list[dict] = field(default_factory=list)
    events_by_pod: dict[str, list[dict]] = field(default_factory=dict)
    schema_hash: str | None = None
    backfill: tuple[str, str, str] | None = None  # (start, end, Job name) of spec.materialization.backfill
    store_problem: Cond | None = None  # Ready False: the FeatureStore named (or `default`) is missing or not Ready


@dataclass
class FeatureViewReport:
    phase: str
    conditions: list[Cond]
    status: dict
    wake_at: datetime | None  # when Fresh would turn False: the one wake-up to schedule


def _succeeded_at(job: dict) -> str | None:
    complete = true_condition(job, "Complete")
    return ((job.get("status") or {}).get("completionTime") or complete.get("lastTransitionTime")) if complete else None


def _failed(job: dict) -> dict | None:
    return true_condition(job, "Failed")


def _hash_of(job: dict) -> str | None:
    return ((job.get("metadata") or {}).get("annotations") or {}).get(MATERIALIZATION_SPEC_HASH_ANNOTATION)


def _failed_at(job: dict) -> str:
    return (_failed(job) or {}).get("lastTransitionTime") or ""


def _is_backfill(job: dict) -> bool:
    return BACKFILL_WINDOW_ANNOTATION in ((job.get("metadata") or {}).get("annotations") or {})


def _utc(value: str) -> str:
    """An RFC 3339 time as status writes times: UTC, seconds, Z."""
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _backfill_status(previous: dict, obs: FeatureViewObserved) -> dict | None:
    if obs.backfill is None:
        return None
    start, end, job_name = obs.backfill
    job = next((j for j in obs.materialization_jobs if j["metadata"]["name"] == job_name), None)
    before = previous.get("backfill") or {}
    if job is None:
        phase = before.get("phase") if before.get("job") == job_name and before.get("phase") in ("Succeeded", "Failed") \
            else "Pending"
    elif _succeeded_at(job):
        phase = "Succeeded"
    elif _failed(job):
        phase = "Failed"
    else:
        phase = "Running"
    return {"start": start, "end": end, "job": job_name, "phase": phase}


def _materialized_until(previous: dict, jobs: list[dict], backfill: dict | None) -> str | None:
    """The watermark: an incremental Job materializes up to the time its pod starts (`date -u`), so its
    startTime is a safe lower bound of its window's end; a backfill ends at its window's end."""
    marks = [previous.get("materializedUntil")]
    marks += [(j.get("status") or {}).get("startTime") for j in jobs if _succeeded_at(j)]
    if backfill and backfill["phase"] == "Succeeded":
        marks.append(_utc(backfill["end"]))
    return max((m for m in marks if m), default=None)


def feature_view_report(previous: dict, obs: FeatureViewObserved, now: datetime) -> FeatureViewReport:
    backfill = _backfill_status(previous, obs)
    jobs = [j for j in obs.materialization_jobs if not _is_backfill(j)]
    obs = replace(obs, materialization_jobs=jobs)
    last = previous.get("lastMaterializedAt")
    last_job = previous.get("lastMaterializationJob")
    done_hash = previous.get("materializationSpecHash")
    current_jobs = [j for j in obs.materialization_jobs if _hash_of(j) == obs.spec_hash]
    # The on-change Job of this spec failed: a scheduled Job created after that failure ran this same spec
    # (the CronJob and the Feast repo were applied with the on-change Job), so its success clears the failure.
    failed_since = max((t for j in current_jobs if (t := _failed_at(j))), default=None)
    for job in obs.materialization_jobs:
        finished = _succeeded_at(job)
        if finished is None:
            continue
        if last is None or finished > last:
            last, last_job = finished, job["metadata"]["name"]
        if _hash_of(job) == obs.spec_hash:
            done_hash = obs.spec_hash
        elif (failed_since is not None and _hash_of(job) is None
              and (job["metadata"].get("creationTimestamp") or "") >= failed_since):
            done_hash = obs.spec_hash

    verb = "Materialized" if obs.online else "Registered"
    if done_hash == obs.spec_hash:
        materialized = Cond("Materialized", True, verb, f"last materialization ended {last}" if obs.online
                            else "registered in the Feast registry (offline only)")
    elif failed := next((f for j in current_jobs if (f := _failed(j))), None):
        detail = failed_pod_message(obs.job_pods)
        message = failed.get("message") or "materialization Job failed"
        materialized = Cond("Materialized", False, "MaterializationFailed", f"{message}; {detail}" if detail else message)
    elif current_jobs:
        problem = first_problem(obs.job_pods, obs.events_by_pod)
        materialized = Cond("Materialized", False, problem.reason if problem else "Materializing",
                            problem.message if problem else f"Job {current_jobs[0]['metadata']['name']} is running")
    else:
        materialized = Cond("Materialized", False, "Pending", "materialization Job not created yet")

    wake_at = None
    last_time = parse_time(last)
    if not obs.online:
        fresh = Cond("Fresh", True, "Offline", "offline-only view: no online store to keep fresh")
    elif last_time is None:
        fresh = Cond("Fresh", False, "NeverMaterialized", "no successful materialization yet")
    elif obs.max_staleness_seconds is None:
        fresh = Cond("Fresh", True, "NoStalenessBudget", f"last materialized {last}; spec.freshness is not set")
    else:
        deadline = last_time + timedelta(seconds=obs.max_staleness_seconds)
        # Messages name fixed times, never ages, so that status does not change on every look.
        if now <= deadline:
            fresh = Cond("Fresh", True, "WithinBudget",
                         f"last materialized {last}; stale after {deadline.strftime('%Y-%m-%dT%H:%M:%SZ')}")
            wake_at = deadline + timedelta(seconds=1)
        else:
            fresh = Cond("Fresh", False, "Stale",
                         f"last materialized {last}, stale since {deadline.strftime('%Y-%m-%dT%H:%M:%SZ')} "
                         f"(maxStaleness {obs.max_staleness_seconds}s)"
                         + ("; materialization is suspended" if obs.suspended else ""))

    server_ready = True
    server_problem = None
    if obs.online:
        status = (obs.server or {}).get("status") or {}
        ready_replicas = status.get("readyReplicas", 0)
        server_ready = obs.server is not None and obs.server_desired > 0 and ready_replicas >= obs.server_desired
        if not server_ready:
            problem = first_problem(obs.pods, obs.events_by_pod)
            server_problem = (Cond("Ready", False, problem.reason, f"feature server: {problem.message}") if problem else
                              Cond("Ready", False, "FeatureServerNotReady",
                                   f"feature server {ready_replicas}/{obs.server_desired} replicas ready"))

    if obs.store_problem is not None:
        ready = obs.store_problem
    elif materialized.status and server_ready:
        ready = Cond("Ready", True, "Serving" if obs.online else "Registered",
                     f"materialized and served at {obs.server_url}" if obs.online else "registered (offline only)")
    elif not materialized.status:
        ready = Cond("Ready", False, materialized.reason, materialized.message)
    else:
        ready = server_problem
    failed_now = materialized.reason == "MaterializationFailed" and obs.store_problem is None
    phase = ("Stale" if ready.status and not fresh.status else "Ready") if ready.status else \
        ("Failed" if failed_now else ("Materializing" if not materialized.status else "Progressing"))
    if obs.store_problem is not None:
        phase = "WaitingForStore"
    # A failed materialization is not retried by the operator: Stalled (kstatus: Failed) until a scheduled
    # materialization succeeds or the spec changes (a new on-change Job).
    clears = ("a later successful scheduled materialization"
              + (" (suspended now: spec.suspend is true)" if obs.suspended else "") + " or a spec change clears it"
              if obs.online else "a spec change clears it (an offline-only view has no scheduled materialization)")
    stalled = Cond("Stalled", True, "MaterializationFailed", f"{materialized.message}; {clears}") if failed_now else None
    conditions = kstatus(ready, converging=not ready.status and not failed_now, stalled=stalled) + [materialized, fresh]
    status = {
        "lastMaterializedAt": last,
        "lastMaterializationJob": last_job,
        "materializationSpecHash": done_hash,
        "servingUrl": obs.server_url if obs.online and server_ready else None,
        "schemaHash": obs.schema_hash,
        "materializedUntil": _materialized_until(previous, jobs, backfill),
        "backfill": backfill,
    }
    return FeatureViewReport(phase, conditions, status, wake_at)


__all__ = ["FeatureViewObserved", "FeatureViewReport", "feature_view_report", "now_iso"]
