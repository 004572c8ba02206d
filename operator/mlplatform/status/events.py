"""Which condition changes become Kubernetes Events, and of which type.

Warning only for trouble (a pod that cannot start or keeps crashing, an unschedulable pod, a failed
run or materialization, a stalled resource, stale features); Normal for progress (Ready, a run
running or succeeded, a condition recovering); nothing for a condition that merely appears in its
initial state or for a secondary condition going back to rest (a finished run no longer Running).
"""

from __future__ import annotations

from dataclasses import dataclass

# The state each announced condition is in when all is well.
GOOD_STATUS = {
    "Ready": "True", "Stalled": "False", "Failed": "False", "Running": "True", "Succeeded": "True",
    "ModelResolved": "True", "FeaturesReady": "True", "Materialized": "True", "Fresh": "True",
    "RolloutAborted": "False", "RouteAccepted": "True",
    # Kueue's Workload conditions, mirrored on a queued TrainingJob.
    "QuotaReserved": "True", "Admitted": "True", "Evicted": "False", "Preempted": "False",
}
# Announced when they first appear in their good state (Kueue's Admitted appears only on admission).
ANNOUNCED_ON_ARRIVAL = {"Ready", "Admitted"}
# Announced only when they reach their good state: their other states are told by Ready and Failed.
PROGRESS_ONLY = {"Running", "Succeeded"}
# Reasons for a condition out of its good state that are ordinary progress, not trouble.
PROGRESS_REASONS = {
    "Creating", "RollingOut", "Suspended", "WaitingForTrainingJob", "FeatureViewNotReady",
    "Materializing", "Pending", "NeverMaterialized", "FeatureServerNotReady",
    "WorkersStarting", "WorkersRunning", "WaitingForAdmission", "Restarting", "WaitingForGateway", "SpecReverted",
    # BatchPrediction runs
    "ShardsStarting", "ShardsRunning", "WaitingForModelDeployment",
    # Kueue's reasons while a Workload waits (QuotaReserved/Admitted False): queueing is progress.
    "NoReservation", "QuotaReserved", "AdmissionChecksPending",
}


@dataclass(frozen=True)
class EventSpec:
    type: str  # Normal or Warning
    reason: str
    message: str


def is_trouble(cond: dict) -> bool:
    if cond["type"] in PROGRESS_ONLY or cond["status"] == GOOD_STATUS[cond["type"]]:
        return False
    return cond["type"] in ("Stalled", "Failed") or cond.get("reason") not in PROGRESS_REASONS


def _announce(old: dict | None, new: dict) -> str | None:
    """The Event type for one condition's change, or None when it is no news."""
    good = new["status"] == GOOD_STATUS[new["type"]]
    trouble = is_trouble(new)
    if old is None:  # first appearance: news only when it is trouble, or a resource Ready (a run admitted) at once
        return "Warning" if trouble else ("Normal" if good and new["type"] in ANNOUNCED_ON_ARRIVAL else None)
    if old.get("status") != new["status"]:
        if trouble:
            return "Warning"
        if good or new["type"] == "Ready":  # Ready leaving True for progress (a rollout after an edit)
            return "Normal"
        return None
    if old.get("reason") != new.get("reason") and trouble:
        return "Warning"  # e.g. still not Ready, but now because the container crashes
    if new["type"] == "Ready" and new.get("reason") == "Suspended" and old.get("reason") != "Suspended":
        return "Normal"  # Ready as before, but now because it is suspended (scaled to zero, run held)
    return None


def condition_events(previous: list[dict] | None, merged: list[dict]) -> list[EventSpec]:
    """Events for the move from previous to merged conditions; one per reason (a failed run flips Ready,
    Stalled and Failed with the same reason: one Warning says it)."""
    before = {c.get("type"): c for c in previous or []}
    events: list[EventSpec] = []
    for cond in merged:
        if cond["type"] not in GOOD_STATUS:
            continue
        event_type = _announce(before.get(cond["type"]), cond)
        if event_type is None or any(e.reason == cond["reason"] for e in events):
            continue
        events.append(EventSpec(event_type, cond["reason"], cond.get("message") or f"{cond['type']} is {cond['status']}"))
    return events
