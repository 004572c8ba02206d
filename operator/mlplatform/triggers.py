"""TrainingJob.spec.trigger: whether a new run starts now without a git change, and when to look again.

Pure functions of the trigger, the TrainingJob's status (its runs say what the last run read and when it
started) and the FeatureViews' status as cached: nothing is kept in memory, so an operator restart decides
the same. The reconcile requeues itself for `wake_at` (the next cron tick, the end of minIntervalSeconds)
through the work queue's delayed add.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from cronsim import CronSim

from .api.trainingjob import Trigger, cron_expression
from .status.conditions import Cond, true_condition

SCHEDULE = "schedule"
AFTER_MATERIALIZATION = "afterMaterialization"
FINISHED = ("Succeeded", "Failed", "Superseded")
CONDITION = "TriggerReady"


@dataclass(frozen=True)
class TriggerDecision:
    start: str | None              # schedule | afterMaterialization: start a new run now; None: not now
    condition: Cond | None         # TriggerReady (None without spec.trigger)
    wake_at: datetime | None = None  # when the decision may change by time alone


def parse_timestamp(value: str | None) -> datetime | None:
    """RFC 3339 (any precision, Z or an offset) -> an aware datetime; None when absent or unreadable."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def last_tick(schedule: str, zone: str | None, now: datetime) -> datetime:
    """The latest tick of the schedule at or before now, in the time zone (DST as the zone has it)."""
    local = now.astimezone(ZoneInfo(zone or "UTC"))
    if local.second == 0 and local.microsecond == 0:  # CronSim's reverse walk starts strictly before
        local += timedelta(seconds=1)
    return next(CronSim(cron_expression(schedule), local, reverse=True)).astimezone(timezone.utc)


def next_tick(schedule: str, zone: str | None, now: datetime) -> datetime:
    local = now.astimezone(ZoneInfo(zone or "UTC"))
    return next(CronSim(cron_expression(schedule), local)).astimezone(timezone.utc)


def _started_at(record: dict) -> datetime | None:
    return parse_timestamp(record.get("triggeredAt")) or parse_timestamp(record.get("startTime"))


def watermark(record: dict | None, view: str) -> datetime | None:
    """The materializedUntil of `view` that the run read (its inputs)."""
    for read in ((record or {}).get("inputs") or {}).get("features") or []:
        if read.get("name") == view:
            return parse_timestamp(read.get("materializedUntil"))
    return None


def view_problem(name: str, view: dict | None) -> tuple[str, str] | None:
    """(reason, words) when a listed FeatureView cannot trigger a run: missing, not Fresh, never materialized."""
    if view is None:
        return "FeatureViewNotFound", f"FeatureView {name} not found"
    if true_condition(view, "Fresh") is None:
        return "FeatureViewNotFresh", f"FeatureView {name} is not Fresh"
    if parse_timestamp((view.get("status") or {}).get("materializedUntil")) is None:
        return "FeatureViewNotMaterialized", f"FeatureView {name} has no status.materializedUntil yet"
    return None


def decide_trigger(trigger: Trigger | None, status: dict, views: dict[str, dict | None], now: datetime,
                   created: datetime | None = None) -> TriggerDecision:
    """A new run when (a) every afterMaterialization view is Fresh and materialized past the watermark the
    newest run read, or (b) a schedule tick passed since the newest run started; never while the current run
    is going (it is not superseded), nor within minIntervalSeconds of the last triggered run, nor while a
    listed view is missing, not Fresh or never materialized. created: the TrainingJob's creation, the clock of
    runs recorded before triggeredAt existed."""
    if trigger is None:
        return TriggerDecision(None, None)
    runs = status.get("runs") or []
    newest = runs[-1] if runs else None
    listed = trigger.after_materialization or []
    problems = [p for p in (view_problem(n, views.get(n)) for n in listed) if p is not None]
    if problems:
        return TriggerDecision(None, Cond(CONDITION, False, problems[0][0], "; ".join(p[1] for p in problems)))
    if newest is None or newest.get("phase") not in FINISHED:
        return TriggerDecision(None, Cond(CONDITION, True, "RunInProgress",
                                          "a trigger waits for the current run to finish"))
    reference = _started_at(newest) or created or now
    due: str | None = None
    waiting: list[str] = []
    wake_at: datetime | None = None
    if listed:
        stale = [n for n in listed if not _moved(views[n], watermark(newest, n))]
        if not stale:
            due = AFTER_MATERIALIZATION
        else:
            waiting.append("waiting for " + ", ".join(
                f"{n} to materialize past {(newest.get('inputs') and _fmt(watermark(newest, n))) or 'the last run'}"
                for n in stale))
    if trigger.schedule:
        if due is None and last_tick(trigger.schedule, trigger.time_zone, now) > reference:
            due = SCHEDULE
        upcoming = next_tick(trigger.schedule, trigger.time_zone, now)
        wake_at = upcoming
        if due is None:
            waiting.append(f"next schedule tick {_fmt(upcoming)}")
    if due is not None and trigger.min_interval_seconds:
        last = max((t for t in (_started_at(r) for r in runs if r.get("trigger") in (SCHEDULE, AFTER_MATERIALIZATION))
                    if t is not None), default=None)
        opens = last + timedelta(seconds=trigger.min_interval_seconds) if last else None
        if opens is not None and now < opens:
            return TriggerDecision(None, Cond(CONDITION, True, "MinInterval",
                                              f"{due} is due; minIntervalSeconds allows the next triggered run at "
                                              f"{_fmt(opens)}"), opens)
    if due is not None:
        return TriggerDecision(due, Cond(CONDITION, True, "Triggered", f"run started by {due}"), wake_at)
    return TriggerDecision(None, Cond(CONDITION, True, "Waiting", "; ".join(waiting)), wake_at)


def _moved(view: dict, read: datetime | None) -> bool:
    current = parse_timestamp((view.get("status") or {}).get("materializedUntil"))
    return current is not None and (read is None or current > read)


def _fmt(value: datetime | None) -> str:
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") if value else ""
