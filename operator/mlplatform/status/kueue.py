"""A queued TrainingJob as Kueue sees it: the Workload's conditions mirrored into ours, and what a run
waiting for admission says."""

from __future__ import annotations

from .conditions import Cond

# Kueue Workload conditions copied onto the TrainingJob (same type, status, reason and message).
MIRRORED_WORKLOAD_CONDITIONS = ("QuotaReserved", "Admitted", "Evicted", "Preempted")


def workload_condition(workload: dict | None, type_: str) -> dict | None:
    return next((c for c in ((workload or {}).get("status") or {}).get("conditions") or []
                 if c.get("type") == type_), None)


def mirrored_conditions(workload: dict | None) -> list[Cond]:
    """Our copies of the Workload's QuotaReserved/Admitted/Evicted/Preempted, those it has."""
    out = []
    for type_ in MIRRORED_WORKLOAD_CONDITIONS:
        cond = workload_condition(workload, type_)
        if cond is not None:
            out.append(Cond(type_, cond.get("status") == "True", cond.get("reason") or type_,
                            (cond.get("message") or "")[:1024]))
    return out


def waiting_message(queue_name: str, workload: dict | None) -> str:
    """'waiting for admission in LocalQueue "team-a"' and, when Kueue said why, its words."""
    message = f"waiting for Kueue admission in LocalQueue {queue_name!r}"
    if workload is None:
        return f"{message} (Kueue has not created the Workload yet)"
    reserved = workload_condition(workload, "QuotaReserved")
    if reserved is not None and reserved.get("status") != "True" and reserved.get("message"):
        return f"{message}: {reserved['message']}"
    evicted = workload_condition(workload, "Evicted")
    if evicted is not None and evicted.get("status") == "True":
        return f"{message}: evicted ({evicted.get('reason')}: {evicted.get('message') or ''})"
    return message
