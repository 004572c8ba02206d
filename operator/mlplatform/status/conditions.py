"""Conditions as a list-map keyed by type; lastTransitionTime moves only when status flips."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone


def now_iso(now: datetime | None = None) -> str:
    return (now or datetime.now(timezone.utc)).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class Cond:
    """A condition as computed; merge() turns it into the API shape."""

    type: str
    status: bool | None  # None -> "Unknown"
    reason: str
    message: str = ""

    @property
    def status_text(self) -> str:
        return "Unknown" if self.status is None else ("True" if self.status else "False")


def merge(previous: list[dict] | None, computed: list[Cond], generation: int, now: str) -> list[dict]:
    """New conditions in the order computed, keeping lastTransitionTime of those that did not flip."""
    before = {c.get("type"): c for c in previous or []}
    merged = []
    for cond in computed:
        old = before.get(cond.type)
        flipped = old is None or old.get("status") != cond.status_text
        merged.append({
            "type": cond.type,
            "status": cond.status_text,
            "reason": cond.reason,
            "message": cond.message,
            "observedGeneration": generation,
            "lastTransitionTime": now if flipped else old.get("lastTransitionTime", now),
        })
    return merged


def true_condition(obj: dict | None, type_: str) -> dict | None:
    """The condition of that type with status True in obj's status (a pod, a Job, a custom resource)."""
    return next((c for c in ((obj or {}).get("status") or {}).get("conditions") or []
                 if c.get("type") == type_ and c.get("status") == "True"), None)


def kstatus(ready: Cond, *, converging: bool, stalled: Cond | None = None) -> list[Cond]:
    """Ready plus the kstatus pair: Reconciling while converging, Stalled only when a spec change is needed."""
    stalled = stalled or Cond("Stalled", False, "NotStalled")
    reconciling = Cond("Reconciling", converging and not stalled.status,
                       ready.reason if converging and not stalled.status else "Reconciled",
                       ready.message if converging and not stalled.status else "")
    return [ready, reconciling, stalled]
