"""FeatureStore status: Ready once the connectivity check of the current configuration succeeded."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..labels import STORE_CONFIG_HASH_ANNOTATION as CONFIG_HASH_ANNOTATION
from .conditions import Cond, kstatus, true_condition
from .pods import failed_pod_message, first_problem


@dataclass
class FeatureStoreObserved:
    config_hash: str
    stores: str  # "offlineStore postgres, onlineStore redis, registry sql"
    check_jobs: list[dict]
    job_pods: list[dict] = field(default_factory=list)
    events_by_pod: dict[str, list[dict]] = field(default_factory=dict)


@dataclass
class FeatureStoreReport:
    phase: str
    conditions: list[Cond]
    status: dict


def _hash_of(job: dict) -> str | None:
    return ((job.get("metadata") or {}).get("annotations") or {}).get(CONFIG_HASH_ANNOTATION)


def _termination_message(pods: list[dict]) -> str | None:
    """The checker's one line (it names the store), from the newest failed pod's termination message."""
    for pod in sorted(pods, key=lambda p: p["metadata"].get("creationTimestamp") or "", reverse=True):
        for container in (pod.get("status") or {}).get("containerStatuses") or []:
            message = (((container.get("state") or {}).get("terminated") or {}).get("message") or "").strip()
            if message:
                return message
    return None


def feature_store_report(previous: dict, obs: FeatureStoreObserved) -> FeatureStoreReport:
    current = [j for j in obs.check_jobs if _hash_of(j) == obs.config_hash]
    complete = next((j for j in current if true_condition(j, "Complete")), None)
    failed = next((j for j in current if true_condition(j, "Failed")), None)
    checked_at = previous.get("checkedAt")
    if complete is not None:
        checked_at = (complete.get("status") or {}).get("completionTime") or checked_at
    checked_hash = obs.config_hash if complete is not None else previous.get("configHash")
    stalled = None
    if checked_hash == obs.config_hash:
        ready = Cond("Ready", True, "StoresReachable",
                     f"{obs.stores}: Feast accepts the configuration and every store answered")
        phase = "Ready"
    elif failed is not None:
        detail = _termination_message(obs.job_pods) or failed_pod_message(obs.job_pods) or \
            true_condition(failed, "Failed").get("message") or "the connectivity check failed"
        ready = Cond("Ready", False, "StoreCheckFailed", detail)
        stalled = Cond("Stalled", True, "StoreCheckFailed", f"{detail}; a spec change (or a fixed Secret and a spec "
                       "change) checks again")
        phase = "Failed"
    elif current:
        problem = first_problem(obs.job_pods, obs.events_by_pod)
        ready = Cond("Ready", False, problem.reason if problem else "Checking",
                     problem.message if problem else f"connectivity check Job {current[0]['metadata']['name']} is running")
        phase = "Checking"
    else:
        ready = Cond("Ready", False, "Pending", "connectivity check Job not created yet")
        phase = "Pending"
    conditions = kstatus(ready, converging=not ready.status and stalled is None, stalled=stalled)
    return FeatureStoreReport(phase, conditions, {"configHash": checked_hash, "checkedAt": checked_at})
